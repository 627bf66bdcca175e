import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { AppError } from './errors.js'
import type { Login, LoginOutcome } from './login.js'
import { migrate } from './migrations.js'
import { findUnwritableFile } from './storage-access.js'
import type {
  AccountSummary,
  DeviceSummary,
  LoginPosition,
  LoginQuery,
  Page,
  Store,
  StoredLogin,
} from './store.js'
import { MAX_TIMESTAMP_NS } from './timestamp.js'

export type SynchronousMode = 'FULL' | 'NORMAL' | 'EXTRA'

export interface SqliteStoreOptions {
  path: string
  /** SQLite's `synchronous` setting; FULL by default, so that a 2xx survives power loss. */
  synchronous?: SynchronousMode
  /** How long a write waits for another connection's lock before failing with SQLITE_BUSY. */
  busyTimeoutMs?: number
}

interface SummaryRow {
  external_id: string
  devices: bigint
  logins: bigint
  first_login: bigint
  last_login: bigint
}

interface LoginRow {
  account_id: string
  user_id: string
  ts: bigint
  device_ref: bigint
}

/**
 * Wraps a failed SQLite call in our storage error, keeping the original as
 * `cause`. Every storage failure is a 503 because the request itself was
 * valid and may succeed when retried.
 */
export function toStorageError(error: unknown, dbPath?: string): AppError {
  if (error instanceof AppError) {
    return error
  }

  const code = String((error as { code?: unknown } | null)?.code ?? '')
  const options = { cause: error, retryAfterSeconds: 1 }
  const unwritable =
    dbPath !== undefined && /^SQLITE_(IOERR|READONLY|CANTOPEN|PERM)/.test(code)
      ? findUnwritableFile(dbPath)
      : undefined
  if (unwritable !== undefined) {
    // The path goes to the log through `cause`, never to the client.
    const cause = new Error(`${unwritable.path} is not writable (${unwritable.code})`, {
      cause: error,
    })
    return new AppError(
      'IOTM_ERR_STORAGE_READONLY',
      'the database is read-only; login not stored',
      { ...options, cause },
    )
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new AppError(
      'IOTM_ERR_STORAGE_BUSY',
      'the database is locked by another writer; retry shortly',
      options,
    )
  }
  if (code === 'SQLITE_FULL') {
    return new AppError(
      'IOTM_ERR_STORAGE_FULL',
      'the disk or the database is full; login not stored',
      options,
    )
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return new AppError(
      'IOTM_ERR_STORAGE_READONLY',
      'the database is read-only; login not stored',
      options,
    )
  }

  return new AppError('IOTM_ERR_STORAGE_FAILED', 'storing the login failed; retry shortly', options)
}

function isBusy(error: unknown): boolean {
  const code = String((error as { code?: unknown } | null)?.code ?? '')

  return code.startsWith('SQLITE_BUSY')
}

function toAccountSummary(row: SummaryRow): AccountSummary {
  return {
    accountId: row.external_id,
    devices: Number(row.devices),
    logins: Number(row.logins),
    firstLoginNs: row.first_login,
    lastLoginNs: row.last_login,
  }
}

function toDeviceSummary(row: SummaryRow): DeviceSummary {
  return {
    userId: row.external_id,
    logins: Number(row.logins),
    firstLoginNs: row.first_login,
    lastLoginNs: row.last_login,
  }
}

/** The size the WAL file is cut back to after a checkpoint. */
export const WAL_SIZE_LIMIT_BYTES = 8 * 1024 * 1024

/**
 * Opens the SQLite database at `options.path`, creating its folder and file
 * when needed, applies the connection settings and migrates the schema.
 * Other modules (token, plan or session stores) share this connection.
 */
export function openDatabase(options: SqliteStoreOptions): Database.Database {
  mkdirSync(dirname(options.path), { recursive: true })
  const db = new Database(options.path)

  // WAL lets the query routes read while the writer commits.
  db.pragma('journal_mode = WAL')
  // FULL syncs the WAL at every commit, so a 2xx survives power loss; NORMAL
  // would only survive a process crash.
  db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`)
  // Another process (a backup, an operator's sqlite3 shell) may hold the
  // write lock briefly; wait for it rather than failing the batch at once.
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`)
  // After each full checkpoint the WAL is cut back to this size, so one
  // burst does not leave a large file behind. The automatic checkpoint every
  // 1000 pages bounds its growth unless another process keeps a read
  // transaction open.
  db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`)
  migrate(db)

  return db
}

/** Opens the database at `options.path` and returns the login store over it. */
export function openSqliteStore(
  options: SqliteStoreOptions,
  behaviour: SqliteStoreBehaviour = {},
): Store {
  return createSqliteStore(openDatabase(options), behaviour)
}

/** Options of the store that do not belong to the connection. */
export interface SqliteStoreBehaviour {
  /**
   * How many times a batch that failed with SQLITE_BUSY (another process held
   * the write lock for longer than the busy timeout) is tried again before it
   * fails. Each try waits up to the busy timeout again.
   */
  busyRetries?: number
  /**
   * Sleep between those tries, in milliseconds (fractions allowed). With a
   * busy timeout of 0, short sleeps hand the lock over sooner than SQLite's
   * own busy handler, which backs off to sleeps of up to 100 ms.
   */
  busyRetryDelayMs?: number
  /**
   * When true, commitBatch and probeWrite do not wait for a write lock held
   * by another connection: they fail at once with IOTM_ERR_STORAGE_BUSY, and
   * the caller retries later. A commit on the event loop needs this, because
   * SQLite's busy handler sleeps in the calling thread for up to the busy
   * timeout. Other writes on the connection keep its busy timeout.
   */
  failFastWhenBusy?: boolean
}

// Atomics.wait on this array is a synchronous sleep that burns no CPU.
const SLEEP = new Int32Array(new SharedArrayBuffer(4))

// Account and device ids are cached so that a login of a known device costs
// one INSERT and no lookups. Ids never change once committed, and no code
// deletes account or device rows (retention keeps them with zero logins), so
// a cached id stays valid for every connection. Past this many devices the
// caches are emptied and refilled from the database, which bounds their memory.
const MAX_CACHED_DEVICES = 200_000

/** Per-batch totals of one device or account, written with one UPDATE each. */
interface BatchTotals {
  logins: number
  newDevices: number
  first: bigint
  last: bigint
}

function addToTotals(totals: Map<number, BatchTotals>, ref: number, ts: bigint) {
  const entry = totals.get(ref)
  if (entry === undefined) {
    totals.set(ref, { logins: 1, newDevices: 0, first: ts, last: ts })
    return
  }

  entry.logins++
  if (ts < entry.first) {
    entry.first = ts
  }
  if (ts > entry.last) {
    entry.last = ts
  }
}

/** Creates the login store over an open, migrated database; closing the store closes the database. */
export function createSqliteStore(
  db: Database.Database,
  behaviour: SqliteStoreBehaviour = {},
): Store {
  const busyRetries = behaviour.busyRetries ?? 0
  const busyRetryDelayMs = behaviour.busyRetryDelayMs ?? 0
  const connectionBusyTimeoutMs = db.pragma('busy_timeout', { simple: true }) as number
  const failFastWhenBusy = behaviour.failFastWhenBusy === true && connectionBusyTimeoutMs > 0

  const selectAccountRef = db.prepare<[string], { id: number }>(
    'SELECT id FROM accounts WHERE external_id = ?',
  )
  const insertAccount = db.prepare<[string], { id: number }>(
    'INSERT INTO accounts (external_id) VALUES (?) RETURNING id',
  )
  const selectDeviceRef = db.prepare<[number, string], { id: number }>(
    'SELECT id FROM devices WHERE account_ref = ? AND external_id = ?',
  )
  const insertDevice = db.prepare<[number, string], { id: number }>(
    'INSERT INTO devices (account_ref, external_id) VALUES (?, ?) RETURNING id',
  )
  const insertLogin = db.prepare<[bigint, number, number]>(
    'INSERT INTO logins (ts, device_ref, account_ref) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
  )
  // min() and max() of SQL return NULL when an argument is NULL, hence coalesce
  // for a device or account that has no login yet.
  // The count before the update, from RETURNING, shows whether the device had
  // no stored login. Such a device counts as a new device of its account:
  // either its row was just created, or retention deleted its earlier logins.
  const countDeviceLogins = db.prepare<
    [{ added: number; first: bigint; last: bigint; device: number }],
    { previous: number }
  >(`
    UPDATE devices
    SET logins = logins + @added,
        first_login = coalesce(min(first_login, @first), @first),
        last_login = coalesce(max(last_login, @last), @last)
    WHERE id = @device
    RETURNING logins - @added AS previous
  `)
  const countAccountLogins = db.prepare<[number, number, bigint, bigint, bigint, bigint, number]>(`
    UPDATE accounts
    SET logins = logins + ?,
        devices = devices + ?,
        first_login = coalesce(min(first_login, ?), ?),
        last_login = coalesce(max(last_login, ?), ?)
    WHERE id = ?
  `)

  const selectAccount = db
    .prepare<[string], SummaryRow>(
      'SELECT external_id, devices, logins, first_login, last_login FROM accounts WHERE external_id = ? AND logins > 0',
    )
    .safeIntegers(true)
  const selectAccountPage = db
    .prepare<[string, number], SummaryRow>(`
      SELECT external_id, devices, logins, first_login, last_login FROM accounts
      WHERE external_id > ? AND logins > 0 ORDER BY external_id LIMIT ?
    `)
    .safeIntegers(true)
  const selectDevicePage = db
    .prepare<[number, string, number], SummaryRow>(`
      SELECT external_id, 0 AS devices, logins, first_login, last_login FROM devices
      WHERE account_ref = ? AND external_id > ? AND logins > 0 ORDER BY external_id LIMIT ?
    `)
    .safeIntegers(true)

  const loginStatements = new Map<string, Database.Statement<Record<string, unknown>, LoginRow>>()

  // One statement per combination of scope and cursor, prepared on first use.
  // Unscoped listings walk the primary key (ts, device_ref); scoped ones the
  // index (account_ref, ts, device_ref), a device scope filtering its rows.
  function loginStatement(scope: 'all' | 'account' | 'device', hasCursor: boolean) {
    const key = `${scope}:${hasCursor}`
    const cached = loginStatements.get(key)
    if (cached !== undefined) {
      return cached
    }

    const conditions = ['l.ts >= :since', 'l.ts <= :until']
    if (scope !== 'all') {
      conditions.push('l.account_ref = :account')
    }
    if (scope === 'device') {
      conditions.push('l.device_ref = :device')
    }
    if (hasCursor) {
      conditions.push(
        scope === 'device'
          ? 'l.ts < :cursorTs'
          : '(l.ts, l.device_ref) < (:cursorTs, :cursorDevice)',
      )
    }
    const sql = `
      SELECT a.external_id AS account_id, d.external_id AS user_id, l.ts, l.device_ref
      FROM logins l
      JOIN devices d ON d.id = l.device_ref
      JOIN accounts a ON a.id = l.account_ref
      WHERE ${conditions.join(' AND ')}
      ORDER BY l.ts DESC, l.device_ref DESC
      LIMIT :limit
    `
    const statement = db.prepare<Record<string, unknown>, LoginRow>(sql).safeIntegers(true)
    loginStatements.set(key, statement)

    return statement
  }

  // Committed ids only: a batch that rolls back removes the ids it added.
  const accountRefs = new Map<string, number>()
  const deviceRefs = new Map<number, Map<string, number>>()
  let cachedDevices = 0
  let addedAccounts: string[] = []
  let addedDevices: Array<[number, string]> = []

  function accountRefOf(accountId: string): number {
    const cached = accountRefs.get(accountId)
    if (cached !== undefined) {
      return cached
    }

    let ref = selectAccountRef.get(accountId)?.id
    if (ref === undefined) {
      ref = (insertAccount.get(accountId) as { id: number }).id
    }
    accountRefs.set(accountId, ref)
    addedAccounts.push(accountId)

    return ref
  }

  /** Returns the device's id, creating its row when the account has no such device yet. */
  function deviceRefOf(accountRef: number, userId: string): number {
    let devices = deviceRefs.get(accountRef)
    const cached = devices?.get(userId)
    if (cached !== undefined) {
      return cached
    }

    let ref = selectDeviceRef.get(accountRef, userId)?.id
    if (ref === undefined) {
      ref = (insertDevice.get(accountRef, userId) as { id: number }).id
    }
    if (devices === undefined) {
      devices = new Map()
      deviceRefs.set(accountRef, devices)
    }
    devices.set(userId, ref)
    cachedDevices++
    addedDevices.push([accountRef, userId])

    return ref
  }

  function forgetAdded(): void {
    for (const accountId of addedAccounts) {
      accountRefs.delete(accountId)
    }
    for (const [accountRef, userId] of addedDevices) {
      if (deviceRefs.get(accountRef)?.delete(userId) === true) {
        cachedDevices--
      }
    }
  }

  const commitAll = db.transaction((logins: readonly Login[]): LoginOutcome[] => {
    const deviceTotals = new Map<number, BatchTotals>()
    const accountTotals = new Map<number, BatchTotals>()
    const deviceAccounts = new Map<number, number>()
    const outcomes: LoginOutcome[] = new Array(logins.length)

    // Insert every login, remembering what each device and account gained.
    for (let index = 0; index < logins.length; index++) {
      const login = logins[index] as Login
      const accountRef = accountRefOf(login.accountId)
      const deviceRef = deviceRefOf(accountRef, login.userId)
      const ts = login.timestampNs

      if (insertLogin.run(ts, deviceRef, accountRef).changes === 0) {
        outcomes[index] = 'duplicate'
        continue
      }
      outcomes[index] = 'stored'
      addToTotals(deviceTotals, deviceRef, ts)
      addToTotals(accountTotals, accountRef, ts)
      deviceAccounts.set(deviceRef, accountRef)
    }

    // Then one counter update per touched device and account. A device that
    // had no stored login becomes one more device of its account.
    for (const [ref, totals] of deviceTotals) {
      const before = countDeviceLogins.get({
        added: totals.logins,
        first: totals.first,
        last: totals.last,
        device: ref,
      })
      if (before?.previous === 0) {
        const accountTotal = accountTotals.get(deviceAccounts.get(ref) as number) as BatchTotals
        accountTotal.newDevices++
      }
    }
    for (const [ref, totals] of accountTotals) {
      countAccountLogins.run(
        totals.logins,
        totals.newDevices,
        totals.first,
        totals.first,
        totals.last,
        totals.last,
        ref,
      )
    }

    return outcomes
  })

  function commitOnce(logins: readonly Login[]): LoginOutcome[] {
    addedAccounts = []
    addedDevices = []
    try {
      // IMMEDIATE takes the write lock up front, so a busy database fails
      // the batch before any statement runs rather than halfway through.
      return commitAll.immediate(logins)
    } catch (error) {
      forgetAdded()
      throw error
    } finally {
      if (cachedDevices > MAX_CACHED_DEVICES) {
        accountRefs.clear()
        deviceRefs.clear()
        cachedDevices = 0
      }
    }
  }

  /** Runs `write` with a busy timeout of 0, and maps its failure to a storage error. */
  function withoutBusyWait<T>(write: () => T): T {
    // SQLite applies PRAGMA busy_timeout when the statement is prepared,
    // so a statement prepared once and run again would not change it.
    // Both calls are cheap next to the fsync of the commit.
    db.pragma('busy_timeout = 0')
    try {
      return write()
    } catch (error) {
      throw toStorageError(error, db.name)
    } finally {
      db.pragma(`busy_timeout = ${connectionBusyTimeoutMs}`)
    }
  }

  // The probe row needs new pages like a real insert and is deleted in the
  // same transaction, so a probe stores nothing.
  const insertProbe = db.prepare('INSERT INTO write_probe (padding) VALUES (zeroblob(8192))')
  const deleteProbe = db.prepare('DELETE FROM write_probe')
  const probe = db.transaction(() => {
    insertProbe.run()
    deleteProbe.run()
  })

  return {
    commitBatch(logins) {
      if (failFastWhenBusy) {
        return withoutBusyWait(() => commitOnce(logins))
      }

      for (let attempt = 0; ; attempt++) {
        try {
          return commitOnce(logins)
        } catch (error) {
          if (attempt >= busyRetries || !isBusy(error)) {
            throw toStorageError(error, db.name)
          }
          if (busyRetryDelayMs > 0) {
            Atomics.wait(SLEEP, 0, 0, busyRetryDelayMs)
          }
        }
      }
    },

    probeWrite() {
      if (failFastWhenBusy) {
        withoutBusyWait(() => probe.immediate())
        return
      }
      try {
        probe.immediate()
      } catch (error) {
        throw toStorageError(error, db.name)
      }
    },

    getAccount(accountId) {
      const row = selectAccount.get(accountId)

      return row === undefined ? undefined : toAccountSummary(row)
    },

    listAccounts(limit, afterAccountId) {
      const rows = selectAccountPage.all(afterAccountId ?? '', limit + 1)

      return paginate(rows.map(toAccountSummary), limit, (last) => last.accountId)
    },

    listDevices(accountId, limit, afterUserId) {
      // An account whose logins all expired is unknown, as in getAccount.
      const accountRef = selectAccountRef.get(accountId)?.id
      if (accountRef === undefined || selectAccount.get(accountId) === undefined) {
        return undefined
      }

      const rows = selectDevicePage.all(accountRef, afterUserId ?? '', limit + 1)

      return paginate(rows.map(toDeviceSummary), limit, (last) => last.userId)
    },

    listLogins(query) {
      return listLogins(query)
    },

    checkpoint() {
      db.pragma('wal_checkpoint(TRUNCATE)')
    },

    close() {
      db.close()
    },
  }

  function listLogins(query: LoginQuery): Page<StoredLogin, LoginPosition> {
    const parameters: Record<string, unknown> = {
      since: query.sinceNs ?? 0n,
      until: query.untilNs === undefined ? MAX_TIMESTAMP_NS : query.untilNs - 1n,
      limit: query.limit + 1,
    }

    let scope: 'all' | 'account' | 'device' = 'all'
    if (query.accountId !== undefined) {
      const accountRef = selectAccountRef.get(query.accountId)?.id
      if (accountRef === undefined) {
        return { items: [] }
      }
      scope = 'account'
      parameters.account = accountRef

      if (query.userId !== undefined) {
        const deviceRef = selectDeviceRef.get(accountRef, query.userId)?.id
        if (deviceRef === undefined) {
          return { items: [] }
        }
        scope = 'device'
        parameters.device = deviceRef
      }
    }

    if (query.after !== undefined) {
      parameters.cursorTs = query.after.timestampNs
      if (scope !== 'device') {
        parameters.cursorDevice = query.after.deviceKey
      }
    }

    const rows = loginStatement(scope, query.after !== undefined).all(parameters)
    const page = paginate(rows, query.limit, (last) => ({
      timestampNs: last.ts,
      deviceKey: Number(last.device_ref),
    }))

    return {
      items: page.items.map((row) => ({
        accountId: row.account_id,
        userId: row.user_id,
        timestampNs: row.ts,
      })),
      ...(page.next === undefined ? {} : { next: page.next }),
    }
  }
}

/** Cuts a list fetched with one extra row down to `limit` and derives the next position from it. */
function paginate<Item, Position>(
  rows: Item[],
  limit: number,
  positionOf: (last: Item) => Position,
): Page<Item, Position> {
  if (rows.length <= limit) {
    return { items: rows }
  }

  const items = rows.slice(0, limit)

  return { items, next: positionOf(items[items.length - 1] as Item) }
}
