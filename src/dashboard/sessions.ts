import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type Database from 'better-sqlite3'

/** A signed-in dashboard session. */
export interface Session {
  adminId: number
  username: string
  csrfToken: string
  createdAt: number
  lastSeenAt: number
}

export type SessionLookup =
  | { status: 'valid'; session: Session }
  | { status: 'expired' }
  | { status: 'unknown' }

export interface SessionOptions {
  /** Milliseconds without a request after which a session ends. */
  idleTimeoutMs: number
  /** Milliseconds after sign-in after which a session ends however active it is. */
  absoluteTimeoutMs: number
  /** The clock, replaceable in tests; Unix milliseconds. */
  now?: () => number
}

export interface SessionStore {
  /** Starts a session for an admin and returns its id, which only the cookie carries. */
  create(adminId: number, ip: string): { id: string; csrfToken: string }
  /** Looks a session up by id and, when it is valid, records the activity. */
  touch(id: string): SessionLookup
  /** True while a session is valid; unlike touch, it records no activity. */
  peek(id: string): boolean
  /** Ends a session; ending an unknown one is not an error. */
  destroy(id: string): void
  /** Deletes every expired session; returns how many. */
  purgeExpired(): number
}

interface SessionRow {
  admin_id: number
  username: string
  csrf_token: string
  created_at: number
  last_seen_at: number
}

// last_seen_at is written at most this often per session, so that a busy
// dashboard does not cost one synchronous commit per request.
const LAST_SEEN_RESOLUTION_MS = 15_000

function hashSessionId(id: string): string {
  return createHash('sha256').update(id).digest('hex')
}

/** Generates a random, URL-safe token of 32 bytes (256 bits). */
export function randomToken(): string {
  return randomBytes(32).toString('base64url')
}

/** Compares two tokens in constant time; false when either is missing. */
export function tokensMatch(expected: string, received: string | undefined): boolean {
  if (received === undefined) {
    return false
  }

  const a = Buffer.from(expected)
  const b = Buffer.from(received)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** Creates the session store over the shared, migrated database. */
export function createSessionStore(db: Database.Database, options: SessionOptions): SessionStore {
  const now = options.now ?? Date.now

  const insert = db.prepare<[string, number, string, number, number, string]>(`
    INSERT INTO dashboard_sessions (id_hash, admin_id, csrf_token, created_at, last_seen_at, ip)
    VALUES (?, ?, ?, ?, ?, ?)
  `)
  const select = db.prepare<[string], SessionRow>(`
    SELECT s.admin_id, u.username, s.csrf_token, s.created_at, s.last_seen_at
    FROM dashboard_sessions s JOIN admin_users u ON u.id = s.admin_id
    WHERE s.id_hash = ?
  `)
  const updateLastSeen = db.prepare<[number, string]>(
    'UPDATE dashboard_sessions SET last_seen_at = ? WHERE id_hash = ?',
  )
  const remove = db.prepare<[string]>('DELETE FROM dashboard_sessions WHERE id_hash = ?')
  const removeExpired = db.prepare<[number, number]>(
    'DELETE FROM dashboard_sessions WHERE last_seen_at <= ? OR created_at <= ?',
  )

  function isExpired(row: SessionRow, at: number): boolean {
    return (
      at - row.last_seen_at >= options.idleTimeoutMs ||
      at - row.created_at >= options.absoluteTimeoutMs
    )
  }

  return {
    create(adminId, ip) {
      const id = randomToken()
      const csrfToken = randomToken()
      const at = now()
      insert.run(hashSessionId(id), adminId, csrfToken, at, at, ip)

      return { id, csrfToken }
    },

    touch(id) {
      const idHash = hashSessionId(id)
      const row = select.get(idHash)
      if (row === undefined) {
        return { status: 'unknown' }
      }

      const at = now()
      // The row stays until purgeExpired, so every later request with this
      // cookie gets SESSION_EXPIRED rather than SESSION_REQUIRED.
      if (isExpired(row, at)) {
        return { status: 'expired' }
      }
      if (at - row.last_seen_at >= LAST_SEEN_RESOLUTION_MS) {
        updateLastSeen.run(at, idHash)
      }

      return {
        status: 'valid',
        session: {
          adminId: row.admin_id,
          username: row.username,
          csrfToken: row.csrf_token,
          createdAt: row.created_at,
          lastSeenAt: at,
        },
      }
    },

    peek(id) {
      const row = select.get(hashSessionId(id))
      return row !== undefined && !isExpired(row, now())
    },

    destroy(id) {
      remove.run(hashSessionId(id))
    },

    purgeExpired() {
      const at = now()
      return removeExpired.run(at - options.idleTimeoutMs, at - options.absoluteTimeoutMs).changes
    },
  }
}
