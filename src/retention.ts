import { setImmediate as nextTurn } from 'node:timers/promises'
import type Database from 'better-sqlite3'
import type { Logger } from 'pino'
import { type LoginsExpiredEvent, loginsExpired } from './events.js'
import {
  DELETE_LOGIN,
  SELECT_EXPIRED_LOGINS,
  SUBTRACT_ACCOUNT_LOGINS,
  SUBTRACT_DEVICE_LOGINS,
} from './logins-sql.js'

// Retention deletes logins whose timestamp is older than the retention
// period, and keeps the summaries describing the logins that are kept. A
// device's and an account's login count and first login drop with the
// deleted logins. A device with no login left is no longer counted in its
// account's devices, and an account with no login left reads as unknown
// (404). Their rows stay, with zero logins, because the store caches their
// ids. A device that logs in again later is counted as new.

export interface RetentionOptions {
  db: Database.Database
  /** Logins with a timestamp older than now minus this are deleted. */
  retentionMs: number
  logger: Logger
  /**
   * Logins deleted per transaction, fixed. Without it the size adapts so
   * that a transaction takes about TARGET_CHUNK_MS: the writer of new logins
   * shares the connection and waits for at most one such transaction.
   */
  chunkSize?: number
  /** Pause between the end of one sweep and the start of the next. */
  intervalMs?: number
}

export interface ChunkResult {
  deleted: number
  devicesRemoved: number
  accountsRemoved: number
}

export interface Retention {
  /**
   * Deletes every login older than the retention period before `nowNs`
   * (default: the current time), one chunk per transaction, yielding to the
   * event loop between chunks. Resolves with the number of logins deleted.
   */
  sweep(nowNs?: bigint): Promise<number>
  /** Stops the schedule and waits for a running sweep to finish its current chunk. */
  close(): Promise<void>
}

export const DEFAULT_RETENTION_INTERVAL_MS = 60_000
/** The duration an adaptive retention transaction aims at. */
export const TARGET_CHUNK_MS = 4
const MIN_CHUNK_SIZE = 16
const MAX_CHUNK_SIZE = 4096
const FIRST_CHUNK_SIZE = 128

interface ExpiredRow {
  device_ref: number
  ts: bigint
  account_ref: number
}

/** Halves the chunk after a transaction over the target, doubles it after one well under. */
function nextChunkSize(size: number, durationMs: number): number {
  if (durationMs > TARGET_CHUNK_MS) {
    return Math.max(MIN_CHUNK_SIZE, Math.floor(size / 2))
  }
  if (durationMs < TARGET_CHUNK_MS / 2) {
    return Math.min(MAX_CHUNK_SIZE, size * 2)
  }

  return size
}

function nowInNanoseconds(): bigint {
  return BigInt(Date.now()) * 1_000_000n
}

function elapsedMs(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6
}

/** Creates the deleter of expired logins over an open, migrated database, without scheduling it. */
export function createRetention(options: RetentionOptions): Retention {
  const { db, logger } = options
  const fixedChunkSize = options.chunkSize
  const retentionNs = BigInt(options.retentionMs) * 1_000_000n

  const selectExpired = db.prepare<Record<string, unknown>, ExpiredRow>(SELECT_EXPIRED_LOGINS)
  selectExpired.safeIntegers(true)
  const deleteLogin = db.prepare<[number, bigint]>(DELETE_LOGIN)
  const subtractDevice = db.prepare<Record<string, unknown>, { logins: number }>(
    SUBTRACT_DEVICE_LOGINS,
  )
  const subtractAccount = db.prepare<Record<string, unknown>, { logins: number }>(
    SUBTRACT_ACCOUNT_LOGINS,
  )

  const deleteChunk = db.transaction((cutoffNs: bigint, chunkSize: number): ChunkResult => {
    const rows = selectExpired.all({ cutoff: cutoffNs, limit: chunkSize })

    // Deleted logins per device, and per account the deleted logins and emptied devices.
    const perDevice = new Map<number, { account: number; deleted: number }>()
    const perAccount = new Map<number, { deleted: number; devicesRemoved: number }>()
    for (const row of rows) {
      const device = Number(row.device_ref)
      const account = Number(row.account_ref)
      deleteLogin.run(device, row.ts)
      const deviceEntry = perDevice.get(device) ?? { account, deleted: 0 }
      deviceEntry.deleted++
      perDevice.set(device, deviceEntry)
    }

    let devicesRemoved = 0
    for (const [device, { account, deleted }] of perDevice) {
      const left = subtractDevice.get({ device, account, deleted })
      const accountEntry = perAccount.get(account) ?? { deleted: 0, devicesRemoved: 0 }
      accountEntry.deleted += deleted
      if (left?.logins === 0) {
        accountEntry.devicesRemoved++
        devicesRemoved++
      }
      perAccount.set(account, accountEntry)
    }

    let accountsRemoved = 0
    for (const [account, entry] of perAccount) {
      const left = subtractAccount.get({ account, ...entry })
      if (left?.logins === 0) {
        accountsRemoved++
      }
    }

    return { deleted: rows.length, devicesRemoved, accountsRemoved }
  })

  let stopping = false
  let running: Promise<number> | undefined

  async function runSweep(nowNs: bigint): Promise<number> {
    const cutoffNs = nowNs - retentionNs
    let chunkSize = fixedChunkSize ?? FIRST_CHUNK_SIZE
    let total = 0
    while (!stopping) {
      const started = process.hrtime.bigint()
      // IMMEDIATE, like the writer's batches, so a busy database fails the
      // chunk before it deletes anything.
      const result = deleteChunk.immediate(cutoffNs, chunkSize)
      const durationMs = elapsedMs(started)
      total += result.deleted
      if (result.deleted > 0 && loginsExpired.hasSubscribers) {
        const event: LoginsExpiredEvent = { ...result, durationMs }
        loginsExpired.publish(event)
      }
      if (result.deleted < chunkSize) {
        break
      }
      if (fixedChunkSize === undefined) {
        chunkSize = nextChunkSize(chunkSize, durationMs)
      }
      // Let queued requests and the write queue's next batch run first.
      await nextTurn()
    }

    return total
  }

  return {
    sweep(nowNs = nowInNanoseconds()) {
      if (running !== undefined) {
        return running
      }

      running = runSweep(nowNs).finally(() => {
        running = undefined
      })
      return running
    },

    async close() {
      stopping = true
      await running?.catch(() => undefined)
      logger.debug('retention stopped')
    },
  }
}

/**
 * Creates the retention deleter and runs a sweep now and then every
 * `intervalMs` after the previous one ends. A failed sweep is logged and
 * retried at the next interval.
 */
export function startRetention(options: RetentionOptions): Retention {
  const retention = createRetention(options)
  const intervalMs = options.intervalMs ?? DEFAULT_RETENTION_INTERVAL_MS
  let timer: NodeJS.Timeout | undefined
  let closed = false

  const run = () => {
    const started = process.hrtime.bigint()
    retention
      .sweep()
      .then(
        (deleted) => {
          if (deleted > 0) {
            options.logger.info(
              { deleted, durationMs: Math.round(elapsedMs(started)) },
              'retention deleted expired logins',
            )
          }
        },
        (error: unknown) => {
          options.logger.error(
            { err: error, retryInMs: intervalMs },
            'retention sweep failed; retrying later',
          )
        },
      )
      .finally(() => {
        if (!closed) {
          timer = setTimeout(run, intervalMs)
          timer.unref()
        }
      })
  }
  timer = setTimeout(run, 0)
  timer.unref()

  return {
    sweep: retention.sweep,
    async close() {
      closed = true
      clearTimeout(timer)
      await retention.close()
    },
  }
}
