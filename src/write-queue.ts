import type { Logger } from 'pino'
import { AppError } from './errors.js'
import {
  type BatchCommittedEvent,
  type BatchFailedEvent,
  batchCommitted,
  batchFailed,
} from './events.js'
import type { Login, LoginOutcome } from './login.js'

export interface WriteQueueOptions {
  /**
   * Stores one batch in one transaction; see Store#commitBatch. It may return
   * a promise (a commit on a worker thread): the queue then keeps one commit
   * in flight and gathers the logins that arrive meanwhile into the next.
   */
  commit: (logins: readonly Login[]) => LoginOutcome[] | Promise<LoginOutcome[]>
  /** Maximum number of logins per transaction; one larger group still commits alone. */
  maxBatchSize: number
  /**
   * Maximum wait of the first login of a batch for others to join it, in
   * milliseconds. With 0 the batch is flushed on the next turn of the event
   * loop, which still groups every login that arrived while the previous
   * commit ran.
   */
  batchDelayMs: number
  /** Maximum number of queued logins; beyond it enqueue rejects with 503. */
  maxQueued: number
  /**
   * Maximum time, in milliseconds, that a login whose synchronous commit
   * failed with IOTM_ERR_STORAGE_BUSY (another process holds the write lock)
   * is tried again before it fails. The retries wait on timers, so the event
   * loop keeps serving other requests meanwhile. 0 (the default) fails at once.
   */
  busyRetryMs?: number
  logger: Logger
}

export interface WriteQueueStats {
  queued: number
  maxQueued: number
  committedBatches: number
  committedLogins: number
  /** Estimated logins per second the writer can commit, from recent batches. */
  drainRatePerSecond: number
}

export interface WriteQueue {
  /** Resolves once the transaction holding the login has committed. */
  enqueue(login: Login): Promise<LoginOutcome>
  /**
   * Commits all logins in one transaction, so either all or none are stored,
   * and resolves with their outcomes in order.
   */
  enqueueAll(logins: readonly Login[]): Promise<LoginOutcome[]>
  stats(): WriteQueueStats
  /** Rejects new logins, commits every queued one, then resolves. */
  close(): Promise<void>
}

/** Logins that must commit in the same transaction, with the request waiting for them. */
interface Group {
  logins: readonly Login[]
  resolve: (outcomes: LoginOutcome[]) => void
  reject: (error: AppError) => void
  /** When the first commit of these logins found the database busy, from Date.now(). */
  busySince?: number
}

// Maximum time one flush keeps committing queued batches before it yields to the event loop.
const FLUSH_BUDGET_MS = 10

// Weight of the newest batch in the drain-rate average.
const DRAIN_RATE_SMOOTHING = 0.2

// Pauses between tries of a batch that found the database busy, in
// milliseconds. The last one repeats. 0 retries on the next turn of the
// event loop, because a commit of another server process usually takes a
// millisecond or two.
const BUSY_RETRY_DELAYS_MS = [0, 0, 1, 1, 2, 4, 8, 16, 25]

function elapsedMs(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6
}

/**
 * Creates the group-commit queue: requests wait here while one writer
 * commits their logins many at a time, so one fsync serves many requests.
 */
export function createWriteQueue(options: WriteQueueOptions): WriteQueue {
  const { commit, maxBatchSize, batchDelayMs, maxQueued, logger } = options
  const busyRetryMs = options.busyRetryMs ?? 0

  let groups: Group[] = []
  let queued = 0
  let scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined
  let closed = false
  let committedBatches = 0
  let committedLogins = 0
  // A conservative first guess until the first batch is measured.
  let drainRatePerSecond = 1000
  let onDrained: (() => void) | undefined
  let drained: Promise<void> | undefined
  // True while `scheduled` is an immediate flush rather than the delay timer.
  let waitingForImmediate = false
  // True while an asynchronous commit runs; its completion schedules the next flush.
  let committing = false
  // True while a batch that found the database busy waits for its retry timer.
  let waitingForLock = false
  // Busy tries in a row; a commit that succeeds, or a batch that fails for
  // good, resets it.
  let busyTries = 0

  function schedule(): void {
    if (committing || waitingForLock) {
      return
    }
    const flushNow = queued >= maxBatchSize || batchDelayMs === 0 || closed
    if (scheduled !== undefined) {
      if (!flushNow || waitingForImmediate) {
        return
      }
      // A full batch (or a shutdown) does not wait out the delay timer.
      clearTimeout(scheduled as NodeJS.Timeout)
    }

    waitingForImmediate = flushNow
    scheduled = flushNow ? setImmediate(flush) : setTimeout(flush, batchDelayMs)
  }

  /** Removes whole groups from the front of the queue, up to maxBatchSize logins but at least one group. */
  function takeBatch(): Group[] {
    let count = 0
    let taken = 0
    while (taken < groups.length) {
      const size = (groups[taken] as Group).logins.length
      if (taken > 0 && count + size > maxBatchSize) {
        break
      }
      count += size
      taken++
    }

    const batch = taken === groups.length ? groups : groups.slice(0, taken)
    groups = taken === groups.length ? [] : groups.slice(taken)
    queued -= count

    return batch
  }

  function flush(): void {
    scheduled = undefined
    waitingForImmediate = false
    // Under overload one event-loop turn can take tens of milliseconds of
    // request handling, so a backlog is committed batch after batch for up
    // to FLUSH_BUDGET_MS per turn rather than one batch per turn. An
    // asynchronous commit (the commit thread) ends the turn at once.
    const started = process.hrtime.bigint()
    do {
      const batch = takeBatch()
      if (batch.length === 0) {
        break
      }
      const pending = commitBatch(batch)
      if (pending === 'retry') {
        return
      }
      if (pending !== undefined) {
        committing = true
        pending.then(afterFlush)
        return
      }
    } while (groups.length > 0 && elapsedMs(started) < FLUSH_BUDGET_MS)
    afterFlush()
  }

  function afterFlush(): void {
    committing = false
    if (groups.length > 0) {
      schedule()
    } else if (onDrained !== undefined) {
      onDrained()
    }
  }

  /**
   * Commits one batch. Returns a promise that settles after it when the
   * commit is asynchronous, and 'retry' when the batch went back to the
   * queue because the database was busy.
   */
  function commitBatch(batch: Group[]): Promise<void> | 'retry' | undefined {
    const logins =
      batch.length === 1 ? (batch[0] as Group).logins : batch.flatMap((group) => group.logins)
    const started = process.hrtime.bigint()

    let result: LoginOutcome[] | Promise<LoginOutcome[]>
    try {
      result = commit(logins)
    } catch (error) {
      if (busyRetryMs > 0 && error instanceof AppError && error.code === 'IOTM_ERR_STORAGE_BUSY') {
        return retryWhenBusy(batch, error, started)
      }
      failBatch(batch, logins.length, error, started)
      return undefined
    }

    if (Array.isArray(result)) {
      finishBatch(batch, logins, result, started)
      return undefined
    }

    return result.then(
      (outcomes) => finishBatch(batch, logins, outcomes, started),
      (error: unknown) => failBatch(batch, logins.length, error, started),
    )
  }

  /**
   * Puts the groups of a batch that found the database busy back at the
   * front of the queue and sets the retry timer. Groups that have waited
   * busyRetryMs fail with the busy error.
   */
  function retryWhenBusy(batch: Group[], error: AppError, started: bigint): 'retry' | undefined {
    const now = Date.now()
    const retried: Group[] = []
    const expired: Group[] = []
    for (const group of batch) {
      group.busySince ??= now
      if (now - group.busySince < busyRetryMs) {
        retried.push(group)
      } else {
        expired.push(group)
      }
    }
    if (expired.length > 0) {
      failBatch(expired, countLogins(expired), error, started)
    }
    if (retried.length === 0) {
      busyTries = 0
      return undefined
    }

    groups = retried.concat(groups)
    queued += countLogins(retried)
    const delayMs = BUSY_RETRY_DELAYS_MS[
      Math.min(busyTries, BUSY_RETRY_DELAYS_MS.length - 1)
    ] as number
    busyTries++
    waitingForLock = true
    const retry = () => {
      waitingForLock = false
      flush()
    }
    scheduled = delayMs === 0 ? setImmediate(retry) : setTimeout(retry, delayMs)

    return 'retry'
  }

  function finishBatch(
    batch: Group[],
    logins: readonly Login[],
    outcomes: LoginOutcome[],
    started: bigint,
  ): void {
    busyTries = 0
    const durationMs = elapsedMs(started)
    const rate = logins.length / Math.max(durationMs / 1000, 1e-6)
    drainRatePerSecond =
      drainRatePerSecond * (1 - DRAIN_RATE_SMOOTHING) + rate * DRAIN_RATE_SMOOTHING
    committedBatches++
    committedLogins += logins.length
    if (batchCommitted.hasSubscribers) {
      const event: BatchCommittedEvent = { logins, outcomes, durationMs }
      batchCommitted.publish(event)
    }

    let offset = 0
    for (const group of batch) {
      group.resolve(outcomes.slice(offset, offset + group.logins.length))
      offset += group.logins.length
    }
  }

  function failBatch(batch: Group[], size: number, error: unknown, started: bigint): void {
    // The store throws AppErrors. Anything else is a bug in the store, and the commit still failed.
    const storageError =
      error instanceof AppError
        ? error
        : new AppError('IOTM_ERR_STORAGE_FAILED', 'storing the login failed; retry shortly', {
            cause: error,
            retryAfterSeconds: 1,
          })
    logger.error(
      { err: storageError.cause ?? storageError, code: storageError.code, batchSize: size },
      'batch commit failed; every login of the batch was rejected',
    )
    if (batchFailed.hasSubscribers) {
      const event: BatchFailedEvent = {
        size,
        code: storageError.code,
        durationMs: elapsedMs(started),
      }
      batchFailed.publish(event)
    }

    for (const group of batch) {
      group.reject(storageError)
    }
  }

  function countLogins(batch: Group[]): number {
    let count = 0
    for (const group of batch) {
      count += group.logins.length
    }

    return count
  }

  function add(logins: readonly Login[]): Promise<LoginOutcome[]> {
    if (closed) {
      return Promise.reject(
        new AppError('IOTM_ERR_QUEUE_CLOSED', 'the server is shutting down; retry shortly', {
          retryAfterSeconds: 1,
        }),
      )
    }
    if (queued + logins.length > maxQueued) {
      // The time the writer needs to drain what is queued now, at its measured rate.
      const retryAfterSeconds = Math.min(60, Math.max(1, Math.ceil(queued / drainRatePerSecond)))
      return Promise.reject(
        new AppError(
          'IOTM_ERR_QUEUE_FULL',
          `the write queue is full (${maxQueued} logins); retry after ${retryAfterSeconds} s`,
          { retryAfterSeconds },
        ),
      )
    }

    return new Promise<LoginOutcome[]>((resolve, reject) => {
      groups.push({ logins, resolve, reject })
      queued += logins.length
      schedule()
    })
  }

  return {
    async enqueue(login) {
      const [outcome] = await add([login])

      return outcome as LoginOutcome
    },

    enqueueAll(logins) {
      return logins.length === 0 ? Promise.resolve([]) : add(logins)
    },

    stats() {
      return { queued, maxQueued, committedBatches, committedLogins, drainRatePerSecond }
    },

    close() {
      closed = true
      if (groups.length === 0 && !committing) {
        return Promise.resolve()
      }

      // Every caller waits for the same drain, so a second close() resolves too.
      drained ??= new Promise<void>((resolve) => {
        onDrained = resolve
        // schedule() replaces a delay timer by an immediate flush once closed.
        schedule()
      })

      return drained
    },
  }
}
