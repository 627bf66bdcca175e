import type Database from 'better-sqlite3'
import { generateManagedToken, hashToken } from './token-format.js'
import type { Scope } from './tokens.js'

/** A managed token as listed: everything but the secret, which is never stored. */
export interface ManagedTokenInfo {
  id: number
  name: string | null
  scope: Scope
  /** The only account an ingest token may send logins for; null when unbound. */
  accountId: string | null
  createdAt: Date
  lastUsedAt: Date | null
  revokedAt: Date | null
}

/** A valid managed token as the server caches it. */
export interface ActiveToken {
  id: number
  hash: Buffer
  scope: Scope
  accountId: string | null
}

export interface NewTokenOptions {
  scope: Scope
  accountId?: string | undefined
  name?: string | undefined
}

export type RevokeResult = 'revoked' | 'already-revoked' | 'not-found'

export interface TokenStore {
  /** Stores the hash of a new token and returns the token, the only time it is available. */
  create(options: NewTokenOptions, now?: Date): { token: string; info: ManagedTokenInfo }
  list(options?: { includeRevoked?: boolean }): ManagedTokenInfo[]
  revoke(id: number, now?: Date): RevokeResult
  /** Every token that is not revoked, for the server's cache. */
  activeTokens(): ActiveToken[]
  /** A counter that changes whenever a token is created, changed or revoked. */
  generation(): number
  /** Records last-use times (ms since the epoch) in one transaction; never moves a time back. */
  recordLastUse(uses: ReadonlyMap<number, number>): void
}

interface TokenRow {
  id: number
  name: string | null
  scope: Scope
  account_id: string | null
  created_at: number
  last_used_at: number | null
  revoked_at: number | null
}

function toInfo(row: TokenRow): ManagedTokenInfo {
  return {
    id: row.id,
    name: row.name,
    scope: row.scope,
    accountId: row.account_id,
    createdAt: new Date(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : new Date(row.last_used_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  }
}

const COLUMNS = 'id, name, scope, account_id, created_at, last_used_at, revoked_at'

/**
 * Creates the token store over an open, migrated database. The server and the
 * `iot-metrics tokens` command each use one, on their own connections to the
 * same file; WAL lets the command write while the server runs.
 */
export function createTokenStore(db: Database.Database): TokenStore {
  const insert = db.prepare<[Buffer, Scope, string | null, string | null, number], TokenRow>(
    `INSERT INTO api_tokens (token_hash, scope, account_id, name, created_at)
     VALUES (?, ?, ?, ?, ?) RETURNING ${COLUMNS}`,
  )
  const selectActive = db.prepare<[], TokenRow>(
    `SELECT ${COLUMNS} FROM api_tokens WHERE revoked_at IS NULL ORDER BY id`,
  )
  const selectAll = db.prepare<[], TokenRow>(`SELECT ${COLUMNS} FROM api_tokens ORDER BY id`)
  const selectOne = db.prepare<[number], TokenRow>(`SELECT ${COLUMNS} FROM api_tokens WHERE id = ?`)
  const revokeOne = db.prepare<[number, number]>(
    'UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL',
  )
  const selectHashes = db.prepare<
    [],
    { id: number; token_hash: Buffer; scope: Scope; account_id: string | null }
  >('SELECT id, token_hash, scope, account_id FROM api_tokens WHERE revoked_at IS NULL')
  const selectGeneration = db.prepare<[], { generation: number }>(
    'SELECT generation FROM api_token_generation WHERE id = 1',
  )
  const updateLastUse = db.prepare<[number, number]>(
    'UPDATE api_tokens SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?',
  )

  const writeLastUse = db.transaction((uses: ReadonlyMap<number, number>) => {
    for (const [id, at] of uses) {
      updateLastUse.run(at, id)
    }
  })

  return {
    create(options, now = new Date()) {
      const token = generateManagedToken(options.scope)
      const row = insert.get(
        hashToken(token),
        options.scope,
        options.accountId ?? null,
        options.name ?? null,
        now.getTime(),
      ) as TokenRow

      return { token, info: toInfo(row) }
    },

    list(options = {}) {
      const rows = options.includeRevoked === true ? selectAll.all() : selectActive.all()

      return rows.map(toInfo)
    },

    revoke(id, now = new Date()) {
      if (revokeOne.run(now.getTime(), id).changes === 1) {
        return 'revoked'
      }

      return selectOne.get(id) === undefined ? 'not-found' : 'already-revoked'
    },

    activeTokens() {
      return selectHashes.all().map((row) => ({
        id: row.id,
        hash: row.token_hash,
        scope: row.scope,
        accountId: row.account_id,
      }))
    },

    generation() {
      return selectGeneration.get()?.generation ?? 0
    },

    recordLastUse(uses) {
      // IMMEDIATE takes the write lock first, like the login batches do.
      writeLastUse.immediate(uses)
    },
  }
}
