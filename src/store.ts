import type { Login, LoginOutcome } from './login.js'

/** Totals kept per account, updated in the same transaction as the logins. */
export interface AccountSummary {
  accountId: string
  /** Distinct users that logged in to the account. */
  devices: number
  logins: number
  firstLoginNs: bigint
  lastLoginNs: bigint
}

/** Totals kept per device (one user of one account). */
export interface DeviceSummary {
  userId: string
  logins: number
  firstLoginNs: bigint
  lastLoginNs: bigint
}

export interface StoredLogin {
  accountId: string
  userId: string
  timestampNs: bigint
}

/** One page of a keyset-paginated listing; `next` is absent on the last page. */
export interface Page<Item, Position> {
  items: Item[]
  next?: Position
}

/** The position after the last login of a page, newest first. */
export interface LoginPosition {
  timestampNs: bigint
  deviceKey: number
}

export interface LoginQuery {
  accountId?: string
  /** Only valid together with accountId. */
  userId?: string
  /** Inclusive lower bound, nanoseconds. */
  sinceNs?: bigint
  /** Exclusive upper bound, nanoseconds. */
  untilNs?: bigint
  limit: number
  after?: LoginPosition
}

/**
 * The storage interface the write queue and the routes use. A different
 * database can back the server by implementing it.
 */
export interface Store {
  /**
   * Stores a batch of logins in one transaction and returns, per login and in
   * order, whether it was new. Throws an AppError with a storage code when the
   * transaction fails, in which case nothing of the batch is stored.
   */
  commitBatch(logins: readonly Login[]): LoginOutcome[]
  getAccount(accountId: string): AccountSummary | undefined
  /** Lists accounts ordered by id, starting after the given id. */
  listAccounts(limit: number, afterAccountId?: string): Page<AccountSummary, string>
  /** Lists an account's devices ordered by user id; undefined for an unknown account. */
  listDevices(
    accountId: string,
    limit: number,
    afterUserId?: string,
  ): Page<DeviceSummary, string> | undefined
  /** Lists logins newest first. */
  listLogins(query: LoginQuery): Page<StoredLogin, LoginPosition>
  /**
   * Commits a small write that stores nothing, to learn whether the database
   * can be written now. Throws an AppError with a storage code when not.
   */
  probeWrite(): void
  /** Runs a WAL checkpoint, for shutdown and tests. */
  checkpoint(): void
  close(): void
}
