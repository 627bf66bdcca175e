import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { Logger } from 'pino'
import { AppError, type ErrorCode } from './errors.js'
import {
  type BatchFailedEvent,
  batchCommitted,
  batchFailed,
  type RequestRejectedEvent,
  requestRejected,
} from './events.js'
import type { WriteQueueStats } from './write-queue.js'

/** A reason the server cannot take logins now. */
export interface ReadinessReason {
  code: ErrorCode
  message: string
}

export interface ReadinessReport {
  ready: boolean
  /** Empty when ready. */
  reasons: ReadinessReason[]
  queued: number
  maxQueued: number
}

export interface Readiness {
  /** Reports whether a login sent now would be accepted, probing the database when due. */
  check(): ReadinessReport
  /** Reports not ready from now on, because the server is draining to stop. */
  markShuttingDown(): void
  /** Stops listening to the server's events. */
  close(): void
}

export interface ReadinessOptions {
  /** The write queue's counters; see WriteQueue#stats. */
  queueStats: () => WriteQueueStats
  /** Runs a write transaction that stores nothing; throws an AppError when the database cannot be written. */
  probeWrite: () => void
  logger: Logger
  /** How long a successful commit or probe vouches for the database before the next probe, in ms. */
  probeIntervalMs?: number
  /** How long the queue counts as saturated after it rejected a login as full, in ms. */
  saturationHoldMs?: number
  now?: () => number
}

/**
 * Tracks whether the server can take logins. The queue counts as saturated
 * while it is full or rejected a login as full within the last
 * `saturationHoldMs`, because under overload it empties and refills many
 * times a second. The database counts as unwritable from a failed commit or
 * probe until a commit or probe succeeds. The state comes from the write
 * queue's events and from a probe write that `check` runs at most once per
 * `probeIntervalMs`, so it recovers even when no traffic arrives.
 */
export function createReadiness(options: ReadinessOptions): Readiness {
  const { queueStats, probeWrite, logger } = options
  const probeIntervalMs = options.probeIntervalMs ?? 1000
  const saturationHoldMs = options.saturationHoldMs ?? 1000
  const now = options.now ?? Date.now

  let lastQueueFullAt = Number.NEGATIVE_INFINITY
  let lastWriteCheckAt = Number.NEGATIVE_INFINITY
  let storageFailure: ReadinessReason | undefined
  let shuttingDown = false

  function markWritable(): void {
    lastWriteCheckAt = now()
    if (storageFailure !== undefined) {
      logger.info({ previousCode: storageFailure.code }, 'the database can be written again')
      storageFailure = undefined
    }
  }

  function markUnwritable(reason: ReadinessReason, cause: unknown): void {
    lastWriteCheckAt = now()
    if (storageFailure?.code !== reason.code) {
      logger.error(
        { code: reason.code, err: cause },
        `the database cannot be written: ${reason.message}`,
      )
    }
    storageFailure = reason
  }

  const onCommitted = () => markWritable()
  const onFailed = (message: unknown) => {
    const { code } = message as BatchFailedEvent
    // The queue has logged the cause already; force a probe on the next check.
    storageFailure = { code: code as ErrorCode, message: 'the last batch commit failed' }
    lastWriteCheckAt = Number.NEGATIVE_INFINITY
  }
  const onRejected = (message: unknown) => {
    if ((message as RequestRejectedEvent).code === 'IOTM_ERR_QUEUE_FULL') {
      lastQueueFullAt = now()
    }
  }
  subscribe(batchCommitted.name, onCommitted)
  subscribe(batchFailed.name, onFailed)
  subscribe(requestRejected.name, onRejected)

  function probe(): void {
    try {
      probeWrite()
      markWritable()
    } catch (error) {
      const appError =
        error instanceof AppError
          ? error
          : new AppError('IOTM_ERR_STORAGE_FAILED', 'the probe write failed', { cause: error })
      markUnwritable({ code: appError.code, message: appError.message }, appError.cause ?? appError)
    }
  }

  return {
    check() {
      if (now() - lastWriteCheckAt >= probeIntervalMs) {
        probe()
      }

      const stats = queueStats()
      const reasons: ReadinessReason[] = []
      if (stats.queued >= stats.maxQueued || now() - lastQueueFullAt < saturationHoldMs) {
        reasons.push({
          code: 'IOTM_ERR_QUEUE_FULL',
          message: `the write queue is saturated (${stats.queued} of ${stats.maxQueued} logins waiting)`,
        })
      }
      if (storageFailure !== undefined) {
        reasons.push(storageFailure)
      }
      if (shuttingDown) {
        reasons.push({ code: 'IOTM_ERR_QUEUE_CLOSED', message: 'the server is shutting down' })
      }

      return {
        ready: reasons.length === 0,
        reasons,
        queued: stats.queued,
        maxQueued: stats.maxQueued,
      }
    },

    markShuttingDown() {
      shuttingDown = true
    },

    close() {
      unsubscribe(batchCommitted.name, onCommitted)
      unsubscribe(batchFailed.name, onFailed)
      unsubscribe(requestRejected.name, onRejected)
    },
  }
}
