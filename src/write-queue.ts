import type { Logger } from 'pino'
import { AppError } from './errors.js'
import type { Login, LoginOutcome } from './login.js'

export interface WriteQueueOptions {
  /** Stores one batch in one transaction; see Store#commitBatch. */
  commit: (logins: readonly Login[]) => LoginOutcome[]
  /** Maximum number of logins per transaction. */
  maxBatchSize: number
  /**
   * Maximum wait of the first login of a batch for others to join it, in milliseconds.
   * With 0 the batch is flushed on the next turn of the event loop, which
   * still groups every login that arrived while the previous commit ran.
   */
  batchDelayMs: number
  /** Maximum number of queued logins; beyond it enqueue rejects with 503. */
  maxQueued: number
  logger: Logger
}

export interface WriteQueueStats {
  queued: number
  committedBatches: number
  committedLogins: number
  /** Estimated logins per second the writer can commit, from recent batches. */
  drainRatePerSecond: number
}

export interface WriteQueue {
  /** Resolves once the transaction holding the login has committed. */
  enqueue(login: Login): Promise<LoginOutcome>
  stats(): WriteQueueStats
  /** Rejects new logins, commits every queued one, then resolves. */
  close(): Promise<void>
}

interface Pending {
  login: Login
  resolve: (outcome: LoginOutcome) => void
  reject: (error: AppError) => void
}

// Weight of the newest batch in the drain-rate average.
const DRAIN_RATE_SMOOTHING = 0.2

/**
 * Creates the group-commit queue: requests wait here while one writer
 * commits their logins many at a time, so one fsync serves many requests.
 */
export function createWriteQueue(options: WriteQueueOptions): WriteQueue {
  const { commit, maxBatchSize, batchDelayMs, maxQueued, logger } = options

  let pending: Pending[] = []
  let scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined
  let closed = false
  let committedBatches = 0
  let committedLogins = 0
  // A conservative first guess until the first batch is measured.
  let drainRatePerSecond = 1000
  let onDrained: (() => void) | undefined

  function schedule(): void {
    if (scheduled !== undefined) {
      return
    }

    if (pending.length >= maxBatchSize || batchDelayMs === 0 || closed) {
      scheduled = setImmediate(flush)
    } else {
      scheduled = setTimeout(flush, batchDelayMs)
    }
  }

  function flush(): void {
    scheduled = undefined
    const batch = pending.length > maxBatchSize ? pending.splice(0, maxBatchSize) : pending
    if (batch === pending) {
      pending = []
    }

    if (batch.length > 0) {
      commitBatch(batch)
    }

    if (pending.length > 0) {
      schedule()
    } else if (onDrained !== undefined) {
      onDrained()
    }
  }

  function commitBatch(batch: Pending[]): void {
    const started = process.hrtime.bigint()
    let outcomes: LoginOutcome[]
    try {
      outcomes = commit(batch.map((entry) => entry.login))
    } catch (error) {
      // The store throws AppErrors. Anything else is a bug in the store, and the commit still failed.
      const storageError =
        error instanceof AppError
          ? error
          : new AppError('IOTM_ERR_STORAGE_FAILED', 'storing the login failed; retry shortly', {
              cause: error,
              retryAfterSeconds: 1,
            })
      logger.error(
        {
          err: storageError.cause ?? storageError,
          code: storageError.code,
          batchSize: batch.length,
        },
        'batch commit failed; every login of the batch was rejected',
      )
      for (const entry of batch) {
        entry.reject(storageError)
      }

      return
    }

    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const rate = batch.length / Math.max(seconds, 1e-6)
    drainRatePerSecond =
      drainRatePerSecond * (1 - DRAIN_RATE_SMOOTHING) + rate * DRAIN_RATE_SMOOTHING
    committedBatches++
    committedLogins += batch.length

    batch.forEach((entry, index) => {
      entry.resolve(outcomes[index] as LoginOutcome)
    })
  }

  return {
    enqueue(login) {
      if (closed) {
        return Promise.reject(
          new AppError('IOTM_ERR_QUEUE_CLOSED', 'the server is shutting down; retry shortly', {
            retryAfterSeconds: 1,
          }),
        )
      }
      if (pending.length >= maxQueued) {
        const retryAfterSeconds = Math.min(
          60,
          Math.max(1, Math.ceil(pending.length / drainRatePerSecond)),
        )
        return Promise.reject(
          new AppError(
            'IOTM_ERR_QUEUE_FULL',
            `the write queue is full (${maxQueued} logins); retry after ${retryAfterSeconds} s`,
            { retryAfterSeconds },
          ),
        )
      }

      return new Promise<LoginOutcome>((resolve, reject) => {
        pending.push({ login, resolve, reject })
        schedule()
      })
    },

    stats() {
      return { queued: pending.length, committedBatches, committedLogins, drainRatePerSecond }
    },

    close() {
      closed = true
      if (pending.length === 0) {
        return Promise.resolve()
      }

      return new Promise<void>((resolve) => {
        onDrained = resolve
        // A timer-delayed flush would only slow the shutdown down.
        if (scheduled !== undefined) {
          clearTimeout(scheduled as NodeJS.Timeout)
          clearImmediate(scheduled as NodeJS.Immediate)
          scheduled = undefined
        }
        schedule()
      })
    },
  }
}
