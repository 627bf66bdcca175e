import { parseTimestamp } from './timestamp.js'

/** One device login as the client sends it, after schema validation. */
export interface LoginBody {
  account_id: string
  user_id: string
  timestamp: string
}

/** One device login in its stored form. */
export interface Login {
  accountId: string
  userId: string
  /** Nanoseconds since the Unix epoch, UTC. */
  timestampNs: bigint
}

/** Result of storing a login: `stored` for a new login, `duplicate` when the same one was stored before. */
export type LoginOutcome = 'stored' | 'duplicate'

const CANONICAL_UUID =
  /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

/**
 * Lower-cases a canonical UUID so that case variants of one UUID name one
 * account or device. Any other identifier is kept exactly as sent.
 */
export function normalizeId(id: string): string {
  return CANONICAL_UUID.test(id) ? id.toLowerCase() : id
}

/** Converts a validated request body into a login; throws an AppError for a bad timestamp. */
export function toLogin(body: LoginBody): Login {
  return {
    accountId: normalizeId(body.account_id),
    userId: normalizeId(body.user_id),
    timestampNs: parseTimestamp(body.timestamp),
  }
}
