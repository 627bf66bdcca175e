import type Database from 'better-sqlite3'

interface Migration {
  version: number
  name: string
  sql: string
}

// Append new migrations at the end; never edit one that has shipped, because
// databases in the field have already applied it.
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
]

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0

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
    const row = db.prepare('SELECT max(version) AS version FROM schema_migrations').get() as {
      version: number | null
    }
    const current = row.version ?? 0
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
      if (migration.version <= current) {
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
