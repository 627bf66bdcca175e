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

      -- One row per distinct (device, instant): the primary key is what makes
      -- a client retry a duplicate instead of a second login.
      CREATE TABLE logins (
        device_ref INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        account_ref INTEGER NOT NULL,
        PRIMARY KEY (device_ref, ts)
      ) WITHOUT ROWID;

      CREATE INDEX logins_by_account_time ON logins (account_ref, ts);
      CREATE INDEX logins_by_time ON logins (ts);
    `,
  },
  {
    version: 7,
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
