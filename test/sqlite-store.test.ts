import assert from 'node:assert/strict'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import Database from 'better-sqlite3'
import { AppError } from '../src/errors.js'
import { type Login, toLogin } from '../src/login.js'
import { LATEST_SCHEMA_VERSION, migrate } from '../src/migrations.js'
import { openSqliteStore, type SqliteStoreOptions, toStorageError } from '../src/sqlite-store.js'
import type { LoginPosition, Page, Store, StoredLogin } from '../src/store.js'
import { MAX_TIMESTAMP_NS, parseTimestamp } from '../src/timestamp.js'
import { tempDir } from './helpers.js'

const BASE_NS = parseTimestamp('2019-03-03T18:02:30.424878129Z')

function login(accountId: string, userId: string, timestampNs: bigint): Login {
  return { accountId, userId, timestampNs }
}

interface Closable {
  close(): void
}

/**
 * Creates a temporary folder for one database file. Stores and connections
 * opened through it are closed before the folder is removed.
 */
function databaseFolder(t: TestContext) {
  const opened: Closable[] = []
  // after hooks run in the order they were added, so this one must come before tempDir's.
  t.after(() => {
    for (const handle of opened) {
      handle.close()
    }
  })
  const path = join(tempDir(t), 'metrics.db')

  return {
    path,
    openStore(options: Omit<SqliteStoreOptions, 'path'> = {}): Store {
      const store = openSqliteStore({ path, ...options })
      opened.push(store)
      return store
    },
    /** Opens a second, independent connection, as another process would. */
    connect(): Database.Database {
      const db = new Database(path)
      opened.push(db)
      return db
    },
  }
}

function openStore(t: TestContext, options: Omit<SqliteStoreOptions, 'path'> = {}): Store {
  return databaseFolder(t).openStore(options)
}

/** Fetches pages until one has no `next` and returns them all. */
function collectPages<Item, Position>(
  fetch: (after: Position | undefined) => Page<Item, Position>,
): Item[][] {
  const pages: Item[][] = []
  let after: Position | undefined
  for (;;) {
    const page = fetch(after)
    pages.push(page.items)
    if (page.next === undefined) {
      return pages
    }
    assert.ok(pages.length < 100, 'pagination does not end')
    after = page.next
  }
}

function loginKey(item: StoredLogin): string {
  return `${item.accountId}/${item.userId}@${item.timestampNs}`
}

/** Reorders deterministically so insertion order differs from every sort order under test. */
function interleave<Item>(items: readonly Item[]): Item[] {
  const odd = items.filter((_, index) => index % 2 === 1)
  const even = items.filter((_, index) => index % 2 === 0)
  return [...odd.reverse(), ...even]
}

test('commitBatch returns an outcome per login in order', (t) => {
  const store = openStore(t)
  const a = login('acct', 'user-a', BASE_NS)
  const b = login('acct', 'user-b', BASE_NS)
  const c = login('acct', 'user-a', BASE_NS + 1n)

  assert.deepEqual(store.commitBatch([a, b, a, c]), ['stored', 'stored', 'duplicate', 'stored'])
  assert.deepEqual(store.commitBatch([c, login('acct', 'user-c', BASE_NS), b]), [
    'duplicate',
    'stored',
    'duplicate',
  ])
  assert.deepEqual(store.commitBatch([]), [])
})

test('treats the same user in two accounts as two devices', (t) => {
  const store = openStore(t)

  const outcomes = store.commitBatch([
    login('acct-1', 'user', BASE_NS),
    login('acct-2', 'user', BASE_NS),
  ])

  assert.deepEqual(outcomes, ['stored', 'stored'])
  assert.equal(store.getAccount('acct-1')?.devices, 1)
  assert.equal(store.getAccount('acct-2')?.devices, 1)
})

test('counts account and device totals', (t) => {
  const store = openStore(t)
  // Out of time order on purpose: first and last come from min and max, not arrival.
  store.commitBatch([
    login('acct', 'user-1', BASE_NS + 300n),
    login('acct', 'user-1', BASE_NS + 100n),
    login('acct', 'user-2', BASE_NS + 50n),
  ])
  store.commitBatch([
    login('acct', 'user-1', BASE_NS + 200n),
    login('acct', 'user-1', BASE_NS + 100n),
  ])

  assert.deepEqual(store.getAccount('acct'), {
    accountId: 'acct',
    devices: 2,
    logins: 4,
    firstLoginNs: BASE_NS + 50n,
    lastLoginNs: BASE_NS + 300n,
  })
  assert.deepEqual(store.listDevices('acct', 10)?.items, [
    { userId: 'user-1', logins: 3, firstLoginNs: BASE_NS + 100n, lastLoginNs: BASE_NS + 300n },
    { userId: 'user-2', logins: 1, firstLoginNs: BASE_NS + 50n, lastLoginNs: BASE_NS + 50n },
  ])
})

test('keeps nanoseconds at both ends of the range', (t) => {
  const store = openStore(t)

  store.commitBatch([login('acct', 'user', MAX_TIMESTAMP_NS), login('acct', 'user', 0n)])
  store.commitBatch([login('acct', 'user', MAX_TIMESTAMP_NS - 1n)])

  const account = store.getAccount('acct')
  assert.equal(account?.firstLoginNs, 0n)
  assert.equal(account?.lastLoginNs, MAX_TIMESTAMP_NS)
  assert.deepEqual(
    store.listLogins({ limit: 10 }).items.map((item) => item.timestampNs),
    [MAX_TIMESTAMP_NS, MAX_TIMESTAMP_NS - 1n, 0n],
  )
})

test('counts case variants of one UUID as one device', (t) => {
  const store = openStore(t)
  const accountId = 'F47AC10B-58CC-4372-A567-0E02B2C3D479'
  const userId = '9B2E6F3A-1C4D-4E5F-8A7B-6C5D4E3F2A1B'
  const timestamp = '2019-03-03T18:02:30.424878129Z'

  const upper = toLogin({ account_id: accountId, user_id: userId, timestamp })
  const lower = toLogin({
    account_id: accountId.toLowerCase(),
    user_id: userId.toLowerCase(),
    timestamp,
  })

  assert.deepEqual(store.commitBatch([upper, lower]), ['stored', 'duplicate'])
  assert.equal(store.getAccount(accountId.toLowerCase())?.devices, 1)
  assert.equal(store.getAccount(accountId), undefined)
})

test('keeps non-UUID ids case-sensitive', (t) => {
  const store = openStore(t)
  const timestamp = '2019-03-03T18:02:30Z'

  const outcomes = store.commitBatch([
    toLogin({ account_id: 'Acct', user_id: 'Device-A', timestamp }),
    toLogin({ account_id: 'Acct', user_id: 'device-a', timestamp }),
  ])

  assert.deepEqual(outcomes, ['stored', 'stored'])
  assert.equal(store.getAccount('Acct')?.devices, 2)
})

test('getAccount returns undefined for an unknown account', (t) => {
  const store = openStore(t)
  store.commitBatch([login('acct', 'user', BASE_NS)])

  assert.equal(store.getAccount('other'), undefined)
})

test('keeps everything after reopening', (t) => {
  const folder = databaseFolder(t)
  const first = folder.openStore()
  first.commitBatch([
    login('acct-1', 'user-1', BASE_NS),
    login('acct-1', 'user-2', BASE_NS + 5n),
    login('acct-2', 'user-1', BASE_NS - 5n),
  ])
  const accounts = first.listAccounts(10)
  const logins = first.listLogins({ limit: 10 })
  first.close()

  const second = folder.openStore()

  assert.deepEqual(second.listAccounts(10), accounts)
  assert.deepEqual(second.listLogins({ limit: 10 }), logins)
  assert.deepEqual(second.commitBatch([login('acct-1', 'user-2', BASE_NS + 5n)]), ['duplicate'])
})

test('records each schema version once across reopens', (t) => {
  const folder = databaseFolder(t)
  folder.openStore().close()
  const reader = folder.connect()
  const readMigrations = () =>
    reader
      .prepare('SELECT version, name, applied_at FROM schema_migrations ORDER BY version')
      .all() as Array<{ version: number; name: string; applied_at: string }>
  const before = readMigrations()

  folder.openStore().close()
  const after = readMigrations()

  assert.equal(before[0]?.version, 1)
  assert.deepEqual(
    before.map((row) => row.version),
    Array.from({ length: LATEST_SCHEMA_VERSION }, (_, index) => index + 1),
  )
  assert.deepEqual(after, before)
})

test('migrate applies pending versions only', () => {
  const db = new Database(':memory:')
  try {
    const all = Array.from({ length: LATEST_SCHEMA_VERSION }, (_, index) => index + 1)

    assert.deepEqual(migrate(db), all)
    assert.deepEqual(migrate(db), [])
  } finally {
    db.close()
  }
})

test('migrate rejects a newer schema', () => {
  const db = new Database(':memory:')
  try {
    migrate(db)
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
      LATEST_SCHEMA_VERSION + 1,
      'from a newer server',
      new Date().toISOString(),
    )

    assert.throws(() => migrate(db), /newer than this server supports/)
  } finally {
    db.close()
  }
})

test('listAccounts walks all accounts in byte order', (t) => {
  const store = openStore(t)
  // Unpadded numbers and mixed case, so byte order differs from insertion and numeric order.
  const ids = Array.from({ length: 25 }, (_, i) => (i % 3 === 0 ? `Acct-${i}` : `acct-${i}`))
  for (const id of interleave(ids)) {
    store.commitBatch([login(id, 'user', BASE_NS)])
  }

  const pages = collectPages((after: string | undefined) => store.listAccounts(7, after))

  assert.deepEqual(
    pages.map((page) => page.length),
    [7, 7, 7, 4],
  )
  assert.deepEqual(
    pages.flat().map((account) => account.accountId),
    [...ids].sort(),
  )
})

test('listAccounts ends without an empty page', (t) => {
  const store = openStore(t)
  store.commitBatch(Array.from({ length: 7 }, (_, i) => login(`acct-${i}`, 'user', BASE_NS)))

  const page = store.listAccounts(7)

  assert.equal(page.items.length, 7)
  assert.equal(page.next, undefined)
})

test('listAccounts returns nothing when empty', (t) => {
  const store = openStore(t)

  assert.deepEqual(store.listAccounts(7), { items: [] })
})

test('listDevices walks all devices in byte order', (t) => {
  const store = openStore(t)
  const users = Array.from({ length: 25 }, (_, i) => (i % 4 === 0 ? `User-${i}` : `user-${i}`))
  store.commitBatch(interleave(users).map((user) => login('acct', user, BASE_NS)))
  store.commitBatch([login('other', 'user-0', BASE_NS)])

  const pages = collectPages((after: string | undefined) => {
    const page = store.listDevices('acct', 7, after)
    assert.ok(page !== undefined)
    return page
  })

  assert.deepEqual(
    pages.map((page) => page.length),
    [7, 7, 7, 4],
  )
  assert.deepEqual(
    pages.flat().map((device) => device.userId),
    [...users].sort(),
  )
})

test('listDevices returns undefined for an unknown account', (t) => {
  const store = openStore(t)
  store.commitBatch([login('acct', 'user', BASE_NS)])

  assert.equal(store.listDevices('unknown', 7), undefined)
})

/**
 * Stores 25 logins of five users of `acct` at five instants shared by all
 * users, so every instant is a tie of five, plus logins of `other` at the
 * same instants. Returns the logins of `acct`.
 */
function storeTiedLogins(store: Store): Login[] {
  const users = ['user-c', 'user-a', 'user-e', 'user-b', 'user-d']
  const logins = users.flatMap((user) =>
    [0n, 1n, 2n, 3n, 4n].map((offset) => login('acct', user, BASE_NS + offset * 1000n)),
  )
  for (const batch of [interleave(logins).slice(0, 12), interleave(logins).slice(12)]) {
    store.commitBatch(batch)
  }
  store.commitBatch([login('other', 'user-a', BASE_NS), login('other', 'user-z', BASE_NS + 2000n)])

  return logins
}

/** Asserts newest-first order and the absence of repeats. */
function assertNewestFirst(items: StoredLogin[]): void {
  for (let i = 1; i < items.length; i++) {
    const previous = items[i - 1] as StoredLogin
    const current = items[i] as StoredLogin
    assert.ok(
      previous.timestampNs >= current.timestampNs,
      `${loginKey(previous)} comes before the older ${loginKey(current)}`,
    )
  }
  assert.equal(new Set(items.map(loginKey)).size, items.length, 'a login appears twice')
}

test('listLogins walks ties across pages without repeats', (t) => {
  const store = openStore(t)
  const logins = storeTiedLogins(store)
  const all = store.listLogins({ limit: 100 }).items

  const pages = collectPages((after: LoginPosition | undefined) =>
    store.listLogins({ accountId: 'acct', limit: 7, after }),
  )
  const walked = pages.flat()

  assert.deepEqual(
    pages.map((page) => page.length),
    [7, 7, 7, 4],
  )
  assertNewestFirst(walked)
  assert.deepEqual(walked.map(loginKey).sort(), logins.map((item) => loginKey(item)).sort())
  assert.deepEqual(
    walked,
    all.filter((item) => item.accountId === 'acct'),
  )
})

test('listLogins walks all accounts at once', (t) => {
  const store = openStore(t)
  storeTiedLogins(store)
  const all = store.listLogins({ limit: 100 }).items

  const walked = collectPages((after: LoginPosition | undefined) =>
    store.listLogins({ limit: 3, after }),
  ).flat()

  assert.equal(all.length, 27)
  assertNewestFirst(all)
  assert.deepEqual(walked, all)
})

test('listLogins filters by account and user', (t) => {
  const store = openStore(t)
  storeTiedLogins(store)

  const pages = collectPages((after: LoginPosition | undefined) =>
    store.listLogins({ accountId: 'acct', userId: 'user-a', limit: 2, after }),
  )

  assert.deepEqual(
    pages.flat().map((item) => [item.accountId, item.userId, item.timestampNs]),
    [4n, 3n, 2n, 1n, 0n].map((offset) => ['acct', 'user-a', BASE_NS + offset * 1000n]),
  )
})

test('listLogins filters by account only', (t) => {
  const store = openStore(t)
  storeTiedLogins(store)

  const items = store.listLogins({ accountId: 'other', limit: 100 }).items

  assert.deepEqual(
    items.map((item) => [item.accountId, item.userId, item.timestampNs]),
    [
      ['other', 'user-z', BASE_NS + 2000n],
      ['other', 'user-a', BASE_NS],
    ],
  )
})

test('listLogins since is inclusive', (t) => {
  const store = openStore(t)
  storeTiedLogins(store)

  const items = store.listLogins({ accountId: 'acct', sinceNs: BASE_NS + 3000n, limit: 100 }).items

  assert.equal(items.length, 10)
  assert.equal(items.filter((item) => item.timestampNs === BASE_NS + 3000n).length, 5)
  assert.ok(items.every((item) => item.timestampNs >= BASE_NS + 3000n))
})

test('listLogins until is exclusive', (t) => {
  const store = openStore(t)
  storeTiedLogins(store)

  const items = store.listLogins({ accountId: 'acct', untilNs: BASE_NS + 1000n, limit: 100 }).items

  assert.equal(items.length, 5)
  assert.ok(items.every((item) => item.timestampNs === BASE_NS))
})

test('listLogins pages through a time window', (t) => {
  const store = openStore(t)
  storeTiedLogins(store)

  const walked = collectPages((after: LoginPosition | undefined) =>
    store.listLogins({ sinceNs: BASE_NS + 1000n, untilNs: BASE_NS + 3000n, limit: 4, after }),
  ).flat()

  assertNewestFirst(walked)
  assert.equal(walked.length, 11)
  assert.ok(
    walked.every(
      (item) => item.timestampNs === BASE_NS + 1000n || item.timestampNs === BASE_NS + 2000n,
    ),
  )
})

test('listLogins returns nothing for unknown ids', (t) => {
  const store = openStore(t)
  storeTiedLogins(store)

  assert.deepEqual(store.listLogins({ accountId: 'unknown', limit: 10 }), { items: [] })
  assert.deepEqual(store.listLogins({ accountId: 'acct', userId: 'user-z', limit: 10 }), {
    items: [],
  })
})

test('commitBatch fails busy while locked', (t) => {
  const folder = databaseFolder(t)
  const store = folder.openStore({ busyTimeoutMs: 50 })
  store.commitBatch([login('acct', 'user-1', BASE_NS)])
  const locker = folder.connect()
  locker.exec('BEGIN IMMEDIATE')

  let failure: unknown
  try {
    store.commitBatch([login('acct', 'user-2', BASE_NS), login('new-acct', 'user-1', BASE_NS)])
  } catch (error) {
    failure = error
  }
  locker.exec('ROLLBACK')

  assert.ok(failure instanceof AppError, `expected an AppError, got ${String(failure)}`)
  assert.equal(failure.code, 'IOTM_ERR_STORAGE_BUSY')
  assert.equal(failure.statusCode, 503)
  assert.equal(failure.retryAfterSeconds, 1)
  assert.match(String((failure.cause as { code?: string }).code), /^SQLITE_BUSY/)
  assert.equal(store.getAccount('new-acct'), undefined)
  assert.equal(store.getAccount('acct')?.logins, 1)
  assert.equal(store.listLogins({ limit: 10 }).items.length, 1)
})

test('commitBatch succeeds after the lock ends', (t) => {
  const folder = databaseFolder(t)
  const store = folder.openStore({ busyTimeoutMs: 50 })
  const locker = folder.connect()
  locker.exec('BEGIN IMMEDIATE')
  assert.throws(() => store.commitBatch([login('acct', 'user', BASE_NS)]), {
    code: 'IOTM_ERR_STORAGE_BUSY',
  })
  locker.exec('COMMIT')

  assert.deepEqual(store.commitBatch([login('acct', 'user', BASE_NS)]), ['stored'])
})

test('reads while another connection writes', (t) => {
  const folder = databaseFolder(t)
  const store = folder.openStore({ busyTimeoutMs: 50 })
  store.commitBatch([login('acct', 'user', BASE_NS)])
  const locker = folder.connect()
  locker.exec('BEGIN IMMEDIATE')

  const account = store.getAccount('acct')
  const logins = store.listLogins({ limit: 10 }).items
  locker.exec('ROLLBACK')

  assert.equal(account?.logins, 1)
  assert.equal(logins.length, 1)
})

test('stores nothing of a batch that fails midway', (t) => {
  const store = openStore(t)
  store.commitBatch([login('acct', 'user-1', BASE_NS)])

  // A timestamp wider than 64 bits makes better-sqlite3 throw on the second login.
  assert.throws(
    () => store.commitBatch([login('acct', 'user-2', BASE_NS), login('acct', 'user-3', 2n ** 64n)]),
    { code: 'IOTM_ERR_STORAGE_FAILED' },
  )
  assert.equal(store.getAccount('acct')?.devices, 1)
  assert.equal(store.getAccount('acct')?.logins, 1)
  assert.deepEqual(store.commitBatch([login('acct', 'user-2', BASE_NS)]), ['stored'])
})

test('checkpoint empties the write-ahead log', (t) => {
  const folder = databaseFolder(t)
  const store = folder.openStore()
  store.commitBatch([login('acct', 'user', BASE_NS)])
  assert.ok(statSync(`${folder.path}-wal`).size > 0)

  store.checkpoint()

  assert.equal(statSync(`${folder.path}-wal`).size, 0)
  assert.equal(store.getAccount('acct')?.logins, 1)
})

test('toStorageError maps SQLite codes', () => {
  const cases: Array<[string, string]> = [
    ['SQLITE_BUSY', 'IOTM_ERR_STORAGE_BUSY'],
    ['SQLITE_BUSY_SNAPSHOT', 'IOTM_ERR_STORAGE_BUSY'],
    ['SQLITE_LOCKED', 'IOTM_ERR_STORAGE_BUSY'],
    ['SQLITE_FULL', 'IOTM_ERR_STORAGE_FULL'],
    ['SQLITE_READONLY', 'IOTM_ERR_STORAGE_READONLY'],
    ['SQLITE_READONLY_DBMOVED', 'IOTM_ERR_STORAGE_READONLY'],
    ['SQLITE_IOERR_FSYNC', 'IOTM_ERR_STORAGE_FAILED'],
    ['SQLITE_CORRUPT', 'IOTM_ERR_STORAGE_FAILED'],
  ]
  for (const [sqliteCode, expected] of cases) {
    const cause = new Database.SqliteError('failed', sqliteCode)
    const error = toStorageError(cause)

    assert.equal(error.code, expected, sqliteCode)
    assert.equal(error.statusCode, 503, sqliteCode)
    assert.equal(error.retryAfterSeconds, 1, sqliteCode)
    assert.equal(error.cause, cause, sqliteCode)
  }
})

test('toStorageError keeps an AppError and wraps anything else', () => {
  const appError = new AppError('IOTM_ERR_STORAGE_FULL', 'full')

  assert.equal(toStorageError(appError), appError)
  assert.equal(toStorageError(new TypeError('bug')).code, 'IOTM_ERR_STORAGE_FAILED')
  assert.equal(toStorageError(null).code, 'IOTM_ERR_STORAGE_FAILED')
})
