// The SQL that the export and retention modules run against the accounts,
// devices and logins tables of src/migrations.ts. It lives in one place so
// that a change of the table layout means changing this file alone.

export const SELECT_ACCOUNT_REF = 'SELECT id FROM accounts WHERE external_id = ?'
export const SELECT_DEVICE_REF = 'SELECT id FROM devices WHERE account_ref = ? AND external_id = ?'

export type ExportScope = 'all' | 'account' | 'device'

/**
 * Builds the keyset query for one chunk of an export, newest first, in the
 * order of GET /logins. Named parameters: :since and :until (inclusive, ns),
 * :account or :device for a narrower scope, :limit, and with `afterPosition`
 * the position (:ts, :deviceKey) of the last row sent, which replaces :until.
 */
export function exportChunkSql(scope: ExportScope, afterPosition: boolean): string {
  // After the first chunk the position is the upper bound, written out as a
  // plain `l.ts <=` too. With both bounds, EXPLAIN QUERY PLAN of SQLite 3.53
  // showed the index range ending at :until, so every chunk rescanned the
  // rows already sent and the export was quadratic.
  const conditions = ['l.ts >= :since', afterPosition ? 'l.ts <= :ts' : 'l.ts <= :until']
  if (scope === 'account') {
    conditions.push('l.account_ref = :account')
  }
  if (scope === 'device') {
    // The account filter lets SQLite walk the (account_ref, ts) index and keep the device's rows.
    conditions.push('l.account_ref = :account', 'l.device_ref = :device')
  }
  if (afterPosition) {
    conditions.push('(l.ts, l.device_ref) < (:ts, :deviceKey)')
  }

  return `
    SELECT a.external_id AS account_id, d.external_id AS user_id, l.ts, l.device_ref
    FROM logins l
    JOIN devices d ON d.id = l.device_ref
    JOIN accounts a ON a.id = l.account_ref
    WHERE ${conditions.join(' AND ')}
    ORDER BY l.ts DESC, l.device_ref DESC
    LIMIT :limit
  `
}

/** The oldest logins before :cutoff, at most :limit of them. */
export const SELECT_EXPIRED_LOGINS = `
  SELECT device_ref, ts, account_ref FROM logins
  WHERE ts < :cutoff ORDER BY ts LIMIT :limit
`
export const DELETE_LOGIN = 'DELETE FROM logins WHERE device_ref = ? AND ts = ?'

// After deleting a device's oldest logins, its first login is the oldest one
// left. A device with none left keeps its row with zero logins and no first or
// last login: the store caches device ids and counts such a device as new
// when it logs in again, so rows are never deleted. The account filter lets
// SQLite use the (account_ref, ts) index.
export const SUBTRACT_DEVICE_LOGINS = `
  UPDATE devices
  SET logins = logins - :deleted,
      first_login = (
        SELECT min(ts) FROM logins WHERE account_ref = :account AND device_ref = :device
      ),
      last_login = CASE WHEN logins - :deleted > 0 THEN last_login END
  WHERE id = :device
  RETURNING logins
`

// Accounts likewise keep their row; one with zero logins reads as unknown.
export const SUBTRACT_ACCOUNT_LOGINS = `
  UPDATE accounts
  SET logins = logins - :deleted,
      devices = devices - :devicesRemoved,
      first_login = (SELECT min(ts) FROM logins WHERE account_ref = :account),
      last_login = CASE WHEN logins - :deleted > 0 THEN last_login END
  WHERE id = :account
  RETURNING logins
`
