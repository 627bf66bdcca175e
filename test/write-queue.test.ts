import assert from 'node:assert/strict'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import Database from 'better-sqlite3'
import { AppError } from '../src/errors.js'
import type { Login } from '../src/login.js'
import {
  openSqliteStore,
  type SqliteStoreBehaviour,
  type SqliteStoreOptions,
} from '../src/sqlite-store.js'
import type { Store } from '../src/store.js'
import { parseTimestamp } from '../src/timestamp.js'
import { createWriteQueue, type WriteQueue, type WriteQueueOptions } from '../src/write-queue.js'
import { captureLogger, tempDir } from './helpers.js'

const BASE_NS = parseTimestamp('2019-03-03T18:02:30.424878129Z')

function login(userId: string, offsetNs = 0n, accountId = 'acct'): Login {
  return { accountId, userId, timestampNs: BASE_NS + offsetNs }
}

interface Closable {
  close(): void
}

interface QueueFixture {
  store: Store
  queue: WriteQueue
  /** Sizes of the batches the queue handed to the store, in commit order. */
  batchSizes: number[]
  logLines: string[]
  /** Opens a second connection to the same database file, as another process would. */
  connect(): Database.Database
}

/**
 * Opens a real store in a temporary folder and a queue that commits to it.
 * The queue, the store and any extra connection are closed before the folder is removed.
 */
function openQueue(
  t: TestContext,
  options: Partial<Omit<WriteQueueOptions, 'commit' | 'logger'>> = {},
  storeOptions: Omit<SqliteStoreOptions, 'path'> = {},
  storeBehaviour: SqliteStoreBehaviour = {},
): QueueFixture {
  const opened: Closable[] = []
  let queue: WriteQueue | undefined
  // after hooks run in the order they were added, so this one must come before tempDir's.
  t.after(async () => {
    await queue?.close()
    for (const handle of opened) {
      handle.close()
    }
  })
  const path = join(tempDir(t), 'metrics.db')
  const store = openSqliteStore({ path, ...storeOptions }, storeBehaviour)
  opened.push(store)

  const { logger, lines } = captureLogger()
  const batchSizes: number[] = []
  queue = createWriteQueue({
    commit: (logins) => {
      batchSizes.push(logins.length)
      return store.commitBatch(logins)
    },
    maxBatchSize: 1000,
    batchDelayMs: 0,
    maxQueued: 10_000,
    logger,
    ...options,
  })

  return {
    store,
    queue,
    batchSizes,
    logLines: lines,
    connect() {
      const db = new Database(path)
      opened.push(db)
      return db
    },
  }
}

/** Waits for the promise to reject and returns the AppError; fails the test when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<AppError> {
  try {
    const value = await promise
    return assert.fail(`expected a rejection, got ${String(value)}`)
  } catch (error) {
    assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`)
    return error
  }
}

test('groups concurrent logins into few batches', async (t) => {
  const { queue, store } = openQueue(t)
  const logins = Array.from({ length: 200 }, (_, i) => login(`user-${i % 20}`, BigInt(i)))

  const outcomes = await Promise.all(logins.map((item) => queue.enqueue(item)))

  assert.ok(outcomes.every((outcome) => outcome === 'stored'))
  assert.ok(queue.stats().committedBatches < logins.length, String(queue.stats().committedBatches))
  assert.equal(queue.stats().committedLogins, 200)
  assert.equal(store.getAccount('acct')?.logins, 200)
})

test('resolves each login to its own outcome', async (t) => {
  const { queue } = openQueue(t)
  await queue.enqueue(login('user-1', 0n))

  const outcomes = await Promise.all([
    queue.enqueue(login('user-1', 0n)),
    queue.enqueue(login('user-2', 0n)),
    queue.enqueue(login('user-1', 1n)),
    queue.enqueue(login('user-2', 0n)),
    queue.enqueue(login('user-3', 0n)),
  ])

  assert.deepEqual(outcomes, ['duplicate', 'stored', 'stored', 'duplicate', 'stored'])
})

test('splits batches at maxBatchSize', async (t) => {
  const { queue, batchSizes } = openQueue(t, { maxBatchSize: 10 })

  await Promise.all(Array.from({ length: 45 }, (_, i) => queue.enqueue(login('user', BigInt(i)))))

  assert.deepEqual(batchSizes, [10, 10, 10, 10, 5])
  assert.equal(queue.stats().committedBatches, 5)
})

test('waits batchDelayMs for more logins', async (t) => {
  const { queue, batchSizes } = openQueue(t, { batchDelayMs: 200 })

  const first = queue.enqueue(login('user-1'))
  await new Promise((resolve) => setImmediate(resolve))
  const second = queue.enqueue(login('user-2'))
  await Promise.all([first, second])

  assert.deepEqual(batchSizes, [2])
})

test('reports queued logins in stats', async (t) => {
  const { queue } = openQueue(t)

  const pending = [queue.enqueue(login('user-1')), queue.enqueue(login('user-2'))]
  const queued = queue.stats().queued
  await Promise.all(pending)

  assert.equal(queued, 2)
  assert.equal(queue.stats().queued, 0)
})

test('rejects a whole batch while locked', async (t) => {
  const { queue, store, connect, logLines } = openQueue(t, {}, { busyTimeoutMs: 20 })
  const locker = connect()
  locker.exec('BEGIN IMMEDIATE')

  const results = await Promise.allSettled([
    queue.enqueue(login('user-1')),
    queue.enqueue(login('user-2')),
    queue.enqueue(login('user-3')),
  ])
  locker.exec('ROLLBACK')

  for (const result of results) {
    assert.equal(result.status, 'rejected')
    const reason = (result as PromiseRejectedResult).reason
    assert.ok(reason instanceof AppError, String(reason))
    assert.equal(reason.code, 'IOTM_ERR_STORAGE_BUSY')
    assert.equal(reason.statusCode, 503)
  }
  assert.equal(queue.stats().committedBatches, 0)
  assert.equal(store.getAccount('acct'), undefined)
  assert.equal(logLines.length, 1)
  assert.match(logLines[0] as string, /"code":"IOTM_ERR_STORAGE_BUSY"/)
  assert.match(logLines[0] as string, /"batchSize":3/)
})

test('keeps working after the lock is released', async (t) => {
  const { queue, connect } = openQueue(t, {}, { busyTimeoutMs: 20 })
  const locker = connect()
  locker.exec('BEGIN IMMEDIATE')
  await rejection(queue.enqueue(login('user-1')))
  locker.exec('ROLLBACK')

  const outcomes = await Promise.all([
    queue.enqueue(login('user-1')),
    queue.enqueue(login('user-2')),
  ])

  assert.deepEqual(outcomes, ['stored', 'stored'])
  assert.equal(queue.stats().committedLogins, 2)
})

test('busy batch waits for the lock on timers', async (t) => {
  const { queue, store, connect, batchSizes } = openQueue(
    t,
    { busyRetryMs: 5000 },
    { busyTimeoutMs: 5000 },
    { failFastWhenBusy: true },
  )
  const locker = connect()
  locker.exec('BEGIN IMMEDIATE')

  let settled = false
  const pending = queue.enqueue(login('user-1')).finally(() => {
    settled = true
  })
  // A commit sleeping in SQLite's busy handler would hold this timer back
  // for the whole busy timeout (5 s).
  const timerStarted = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 100))
  const waitedMs = Date.now() - timerStarted
  const settledWhileLocked = settled
  const triesWhileLocked = batchSizes.length
  locker.exec('COMMIT')

  assert.ok(waitedMs < 2000, `the event loop was blocked: a 100 ms timer took ${waitedMs} ms`)
  assert.equal(settledWhileLocked, false)
  assert.ok(triesWhileLocked > 1, `expected retries, got ${triesWhileLocked} tries`)
  assert.equal(await pending, 'stored')
  assert.equal(store.getAccount('acct')?.logins, 1)
})

test('busy batch fails after busyRetryMs', async (t) => {
  const { queue, store, connect } = openQueue(
    t,
    { busyRetryMs: 150 },
    { busyTimeoutMs: 5000 },
    { failFastWhenBusy: true },
  )
  const locker = connect()
  locker.exec('BEGIN IMMEDIATE')
  const started = Date.now()

  const error = await rejection(queue.enqueue(login('user-1')))
  const waitedMs = Date.now() - started
  locker.exec('ROLLBACK')

  assert.equal(error.code, 'IOTM_ERR_STORAGE_BUSY')
  assert.ok(waitedMs >= 150, `failed after ${waitedMs} ms`)
  assert.equal(store.getAccount('acct'), undefined)
  assert.equal(await queue.enqueue(login('user-2')), 'stored')
})

test('rejects a login beyond maxQueued', async (t) => {
  const { queue } = openQueue(t, { maxQueued: 3 })
  const accepted = [1, 2, 3].map((i) => queue.enqueue(login(`user-${i}`)))

  const error = await rejection(queue.enqueue(login('user-4')))

  assert.equal(error.code, 'IOTM_ERR_QUEUE_FULL')
  assert.equal(error.statusCode, 503)
  assert.ok((error.retryAfterSeconds ?? 0) >= 1, String(error.retryAfterSeconds))
  assert.ok((error.retryAfterSeconds ?? 0) <= 60, String(error.retryAfterSeconds))
  assert.deepEqual(await Promise.all(accepted), ['stored', 'stored', 'stored'])
})

test('accepts logins again once the queue drains', async (t) => {
  const { queue } = openQueue(t, { maxQueued: 2 })
  const first = [queue.enqueue(login('user-1')), queue.enqueue(login('user-2'))]
  await rejection(queue.enqueue(login('user-3')))
  await Promise.all(first)

  assert.equal(await queue.enqueue(login('user-3')), 'stored')
})

test('close commits every queued login first', async (t) => {
  // A long delay shows that close flushes at once instead of waiting for the timer.
  const { queue, store } = openQueue(t, { batchDelayMs: 1000 })
  const pending = Array.from({ length: 5 }, (_, i) => queue.enqueue(login(`user-${i}`)))
  const started = Date.now()

  await queue.close()
  const closedAfterMs = Date.now() - started

  assert.ok(closedAfterMs < 1000, `close took ${closedAfterMs} ms`)
  assert.equal(store.getAccount('acct')?.logins, 5)
  assert.equal(queue.stats().committedLogins, 5)
  assert.equal(queue.stats().queued, 0)
  assert.deepEqual(await Promise.all(pending), ['stored', 'stored', 'stored', 'stored', 'stored'])
})

test('close drains more than one batch', async (t) => {
  const { queue, store, batchSizes } = openQueue(t, { maxBatchSize: 4 })
  const pending = Array.from({ length: 10 }, (_, i) => queue.enqueue(login(`user-${i}`)))

  await queue.close()

  assert.deepEqual(batchSizes, [4, 4, 2])
  assert.equal(store.getAccount('acct')?.logins, 10)
  assert.equal((await Promise.all(pending)).length, 10)
})

test('close resolves at once when nothing is queued', async (t) => {
  const { queue } = openQueue(t)

  await queue.close()

  assert.equal(queue.stats().committedBatches, 0)
})

test('rejects enqueue after close', async (t) => {
  const { queue, store } = openQueue(t)
  await queue.close()

  const error = await rejection(queue.enqueue(login('user')))

  assert.equal(error.code, 'IOTM_ERR_QUEUE_CLOSED')
  assert.equal(error.statusCode, 503)
  assert.equal(store.getAccount('acct'), undefined)
})

test('enqueueAll resolves outcomes in order', async (t) => {
  const { queue } = openQueue(t)
  await queue.enqueue(login('user-2'))

  const outcomes = await queue.enqueueAll([login('user-1'), login('user-2'), login('user-1')])

  assert.deepEqual(outcomes, ['stored', 'duplicate', 'duplicate'])
})

test('enqueueAll shares a batch with single logins', async (t) => {
  const { queue, batchSizes } = openQueue(t)

  const [single, group, last] = await Promise.all([
    queue.enqueue(login('user-1')),
    queue.enqueueAll([login('user-2'), login('user-1')]),
    queue.enqueue(login('user-3')),
  ])

  assert.deepEqual(batchSizes, [4])
  assert.equal(single, 'stored')
  assert.deepEqual(group, ['stored', 'duplicate'])
  assert.equal(last, 'stored')
})

test('enqueueAll never splits a group across batches', async (t) => {
  const { queue, batchSizes } = openQueue(t, { maxBatchSize: 4 })

  await Promise.all([
    queue.enqueueAll([login('user-1'), login('user-2'), login('user-3')]),
    queue.enqueueAll([login('user-4'), login('user-5'), login('user-6')]),
    queue.enqueueAll(Array.from({ length: 6 }, (_, i) => login(`user-${i + 7}`))),
  ])

  // The third group is larger than maxBatchSize and commits alone.
  assert.deepEqual(batchSizes, [3, 3, 6])
})

test('enqueueAll stores nothing when the database is locked', async (t) => {
  const { queue, store, connect } = openQueue(t, {}, { busyTimeoutMs: 20 })
  const locker = connect()
  locker.exec('BEGIN IMMEDIATE')

  const error = await rejection(queue.enqueueAll([login('user-1'), login('user-2')]))
  locker.exec('ROLLBACK')

  assert.equal(error.code, 'IOTM_ERR_STORAGE_BUSY')
  assert.equal(store.getAccount('acct'), undefined)
})

test('enqueueAll counts every login against maxQueued', async (t) => {
  const { queue, store } = openQueue(t, { maxQueued: 3 })

  const error = await rejection(
    queue.enqueueAll([login('user-1'), login('user-2'), login('user-3'), login('user-4')]),
  )

  assert.equal(error.code, 'IOTM_ERR_QUEUE_FULL')
  assert.equal(queue.stats().queued, 0)
  assert.equal(store.getAccount('acct'), undefined)
})

test('enqueueAll of nothing resolves to nothing', async (t) => {
  const { queue } = openQueue(t)

  assert.deepEqual(await queue.enqueueAll([]), [])
  assert.equal(queue.stats().committedBatches, 0)
})

test('close called twice resolves both calls', async (t) => {
  const { queue, store } = openQueue(t, { batchDelayMs: 50 })
  const pending = queue.enqueue(login('u1'))

  const first = queue.close()
  const second = queue.close()
  await Promise.all([first, second, pending])

  assert.equal(store.getAccount('acct')?.logins, 1)
})

test('full batch does not wait for the delay timer', async (t) => {
  const { queue, batchSizes } = openQueue(t, { batchDelayMs: 5000, maxBatchSize: 3 })
  const started = Date.now()

  await Promise.all([
    queue.enqueue(login('u1')),
    queue.enqueue(login('u2')),
    queue.enqueue(login('u3')),
  ])

  assert.deepEqual(batchSizes, [3])
  assert.ok(Date.now() - started < 4000, 'the batch committed before the 5 s timer')
})
