import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { startCommitThread } from '../src/commit-thread.js'
import type { Login } from '../src/login.js'
import { openSqliteStore } from '../src/sqlite-store.js'
import { createWriteQueue } from '../src/write-queue.js'
import { captureLogger, tempDir } from './helpers.js'

const ACCOUNT = 'acct-1'

function login(userId: string, timestampNs: bigint, accountId = ACCOUNT): Login {
  return { accountId, userId, timestampNs }
}

test('batch counters match logins, duplicates excluded', (t) => {
  const store = openSqliteStore({ path: join(tempDir(t), 'metrics.db') })
  t.after(() => store.close())

  const outcomes = store.commitBatch([
    login('u1', 30n),
    login('u1', 10n),
    login('u1', 30n),
    login('u2', 20n),
  ])
  store.commitBatch([login('u1', 5n), login('u2', 20n)])

  assert.deepEqual(outcomes, ['stored', 'stored', 'duplicate', 'stored'])
  const account = store.getAccount(ACCOUNT)
  assert.equal(account?.devices, 2)
  assert.equal(account?.logins, 4)
  assert.equal(account?.firstLoginNs, 5n)
  assert.equal(account?.lastLoginNs, 30n)
  const devices = store.listDevices(ACCOUNT, 10)?.items ?? []
  assert.deepEqual(
    devices.map((device) => [
      device.userId,
      device.logins,
      device.firstLoginNs,
      device.lastLoginNs,
    ]),
    [
      ['u1', 3, 5n, 30n],
      ['u2', 1, 20n, 20n],
    ],
  )
})

test('rolled-back batch leaves no cached ids behind', (t) => {
  const store = openSqliteStore({ path: join(tempDir(t), 'metrics.db') })
  t.after(() => store.close())

  // An instant beyond 64 bits fails the batch after its account and device were inserted.
  assert.throws(() => store.commitBatch([login('u1', 1n, 'new'), login('u1', 2n ** 64n, 'new')]))
  const outcomes = store.commitBatch([login('u1', 1n, 'new')])

  assert.deepEqual(outcomes, ['stored'])
  assert.equal(store.getAccount('new')?.devices, 1)
  assert.equal(store.getAccount('new')?.logins, 1)
  assert.equal(store.listLogins({ accountId: 'new', userId: 'u1', limit: 10 }).items.length, 1)
})

test('device listing pages newest first within an account', (t) => {
  const store = openSqliteStore({ path: join(tempDir(t), 'metrics.db') })
  t.after(() => store.close())
  const logins: Login[] = []
  for (let index = 0; index < 30; index++) {
    logins.push(login(`u${index % 3}`, BigInt(1000 + index)))
  }
  store.commitBatch(logins)

  const seen: bigint[] = []
  let after: ReturnType<typeof store.listLogins>['next']
  do {
    const page = store.listLogins({ accountId: ACCOUNT, userId: 'u1', limit: 4, after })
    seen.push(...page.items.map((item) => item.timestampNs))
    after = page.next
  } while (after !== undefined)

  const expected = logins
    .filter((each) => each.userId === 'u1')
    .map((each) => each.timestampNs)
    .reverse()
  assert.deepEqual(seen, expected)
})

test('commit thread stores a batch the main connection reads', async (t) => {
  const path = join(tempDir(t), 'metrics.db')
  const store = openSqliteStore({ path })
  const thread = await startCommitThread({ path })
  t.after(async () => {
    await thread.close()
    store.close()
  })

  const outcomes = await thread.commit([login('u1', 1n), login('u1', 1n), login('u2', 2n)])

  assert.deepEqual(outcomes, ['stored', 'duplicate', 'stored'])
  assert.equal(store.getAccount(ACCOUNT)?.logins, 2)
})

/** Holds the write lock of the database for `ms` milliseconds from another connection. */
function holdWriteLock(path: string, ms: number): Promise<void> {
  const db = new Database(path)
  db.exec('BEGIN IMMEDIATE')

  return new Promise((resolve) =>
    setTimeout(() => {
      db.exec('COMMIT')
      db.close()
      resolve()
    }, ms),
  )
}

test('commit thread retries a batch the lock kept busy', async (t) => {
  const path = join(tempDir(t), 'metrics.db')
  openSqliteStore({ path }).close()
  const thread = await startCommitThread({ path, busyRetries: 10_000, busyRetryDelayMs: 0.25 })
  t.after(() => thread.close())

  const released = holdWriteLock(path, 150)
  const outcomes = await thread.commit([login('u1', 1n)])
  await released

  assert.deepEqual(outcomes, ['stored'])
})

test('commit thread fails a busy batch with a 503 storage error', async (t) => {
  const path = join(tempDir(t), 'metrics.db')
  openSqliteStore({ path }).close()
  const thread = await startCommitThread({ path, busyTimeoutMs: 20, busyRetries: 0 })
  t.after(() => thread.close())

  const released = holdWriteLock(path, 150)
  const failure = thread.commit([login('u1', 1n)])

  await assert.rejects(failure, { code: 'IOTM_ERR_STORAGE_BUSY', statusCode: 503 })
  await released
})

test('queue gathers logins that arrive during an async commit', async (t) => {
  const { logger } = captureLogger()
  const sizes: number[] = []
  let release: (() => void) | undefined
  const queue = createWriteQueue({
    commit(logins) {
      sizes.push(logins.length)
      return new Promise((resolve) => {
        release = () => resolve(logins.map(() => 'stored'))
      })
    },
    maxBatchSize: 100,
    batchDelayMs: 0,
    maxQueued: 1000,
    logger,
  })
  t.after(() => queue.close())

  const first = queue.enqueue(login('u0', 0n))
  await new Promise((resolve) => setImmediate(resolve))
  const rest = [1, 2, 3].map((index) => queue.enqueue(login(`u${index}`, BigInt(index))))
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(sizes, [1])

  release?.()
  await first
  await new Promise((resolve) => setImmediate(resolve))
  release?.()
  await Promise.all(rest)

  assert.deepEqual(sizes, [1, 3])
})

test('queue close waits for the commit in flight', async (t) => {
  const { logger } = captureLogger()
  let committed = false
  const queue = createWriteQueue({
    commit: (logins) =>
      new Promise((resolve) =>
        setTimeout(() => {
          committed = true
          resolve(logins.map(() => 'stored'))
        }, 50),
      ),
    maxBatchSize: 100,
    batchDelayMs: 0,
    maxQueued: 1000,
    logger,
  })
  t.after(() => queue.close())

  const pending = queue.enqueue(login('u0', 0n))
  await new Promise((resolve) => setImmediate(resolve))
  await queue.close()

  assert.equal(committed, true)
  assert.equal(await pending, 'stored')
})
