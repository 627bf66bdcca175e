import type Database from 'better-sqlite3'

interface Migration {
  version: number
  name: string
  sql: string
}

// Keep the list in version order and never edit a migration that has
// shipped, because databases in the field have already applied it.
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'accounts, devices and logins',
    sql: `
      CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        external_id TEXT NOT NULL UNIQUE,
        devices INTEGER NOT NULL DEFAULT 0,
        logins INTEGER NOT NULL DEFAULT 0,
        first_login INTEGER,
        last_login INTEGER
      );

      CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        account_ref INTEGER NOT NULL REFERENCES accounts (id),
        external_id TEXT NOT NULL,
        logins INTEGER NOT NULL DEFAULT 0,
        first_login INTEGER,
        last_login INTEGER,
        UNIQUE (account_ref, external_id)
      );

      -- One row per distinct (device, instant). A device belongs to one
      -- account, so the key (ts, device_ref) is unique exactly when
      -- (device_ref, ts) is: a client retry is a duplicate, not a second
      -- login. Keyed by time first, rows arrive near the end of the tree and
      -- pages fill up, and the key itself serves the unfiltered listing.
      -- The one index serves everything scoped to an account or a device;
      -- with the key columns SQLite appends, it is (account_ref, ts,
      -- device_ref). About 43 bytes per login in all, where a third index on
      -- (device_ref, ts) would add about 18.
      CREATE TABLE logins (
        ts INTEGER NOT NULL,
        device_ref INTEGER NOT NULL,
        account_ref INTEGER NOT NULL,
        PRIMARY KEY (ts, device_ref)
      ) WITHOUT ROWID;

      CREATE INDEX logins_by_account_time ON logins (account_ref, ts);
    `,
  },
  {
    version: 2,
    name: 'managed api tokens',
    sql: `
      -- Only the SHA-256 of a token is stored; the token itself is shown once.
      -- AUTOINCREMENT keeps the id of a revoked token from being reused.
      CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        token_hash BLOB NOT NULL UNIQUE,
        scope TEXT NOT NULL CHECK (scope IN ('ingest', 'read')),
        account_id TEXT CHECK (account_id IS NULL OR scope = 'ingest'),
        name TEXT,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
      );

      -- Bumped by every change a running server must see (a new token, a
      -- revocation), but not by last-use updates, so the server reloads its
      -- token cache only when the set of valid tokens changed.
      CREATE TABLE api_token_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL
      );
      INSERT INTO api_token_generation (id, generation) VALUES (1, 0);

      CREATE TRIGGER api_tokens_inserted AFTER INSERT ON api_tokens BEGIN
        UPDATE api_token_generation SET generation = generation + 1;
      END;
      CREATE TRIGGER api_tokens_changed
      AFTER UPDATE OF token_hash, scope, account_id, revoked_at ON api_tokens BEGIN
        UPDATE api_token_generation SET generation = generation + 1;
      END;
      CREATE TRIGGER api_tokens_deleted AFTER DELETE ON api_tokens BEGIN
        UPDATE api_token_generation SET generation = generation + 1;
      END;
    `,
  },
  {
    version: 3,
    name: 'dashboard: plans, plan changes, admin users and sessions',
    sql: `
      -- An account without a row here is on the Standard plan.
      CREATE TABLE account_plans (
        account_id TEXT PRIMARY KEY,
        plan TEXT NOT NULL CHECK (plan IN ('standard', 'enterprise')),
        changed_at TEXT NOT NULL,
        changed_by TEXT NOT NULL
      );

      CREATE TABLE plan_changes (
        id INTEGER PRIMARY KEY,
        account_id TEXT NOT NULL,
        from_plan TEXT NOT NULL,
        to_plan TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        changed_at TEXT NOT NULL
      );
      CREATE INDEX plan_changes_by_account ON plan_changes (account_id, id);

      -- password_hash holds the scrypt parameters and salt beside the hash.
      CREATE TABLE admin_users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        password_changed_at TEXT NOT NULL
      );

      -- Only the SHA-256 of a session id is stored, so a copy of the database
      -- does not hand out live sessions. Times are Unix milliseconds.
      CREATE TABLE dashboard_sessions (
        id_hash TEXT PRIMARY KEY,
        admin_id INTEGER NOT NULL REFERENCES admin_users (id),
        csrf_token TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        ip TEXT NOT NULL
      );
      CREATE INDEX dashboard_sessions_by_admin ON dashboard_sessions (admin_id);
    `,
  },
  {
    version: 4,
    name: 'write probe for the readiness check',
    // Always empty: the probe inserts and deletes one row in one transaction.
    sql: `
      CREATE TABLE write_probe (
        id INTEGER PRIMARY KEY,
        padding BLOB NOT NULL
      );
    `,
  },
]

export const LATEST_SCHEMA_VERSION = Math.max(
  0,
  ...MIGRATIONS.map((migration) => migration.version),
)

/**
 * Brings the database schema up to the latest version in one transaction,
 * recording each applied migration. Throws when the database was written by
 * a newer server, because running old code on a newer schema can lose data.
 */
export function migrate(db: Database.Database): number[] {
  db.exec(`
    CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at TEXT NOT NULL
    )
  `)

  const applyPending = db.transaction((): number[] => {
    // Branches may add migrations with numbers below one already applied, so
    // each migration is checked by its own version rather than by the maximum.
    const recorded = new Set(
      db.prepare('SELECT version FROM schema_migrations').pluck().all() as number[],
    )
    const current = Math.max(0, ...recorded)
    if (current > LATEST_SCHEMA_VERSION) {
      throw new Error(
        `database schema version ${current} is newer than this server supports (${LATEST_SCHEMA_VERSION}); upgrade the server`,
      )
    }

    const record = db.prepare(
      'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
    )
    const applied: number[] = []
    for (const migration of MIGRATIONS) {
      if (recorded.has(migration.version)) {
        continue
      }
      db.exec(migration.sql)
      record.run(migration.version, migration.name, new Date().toISOString())
      applied.push(migration.version)
    }

    return applied
  })

  return applyPending.immediate()
}
