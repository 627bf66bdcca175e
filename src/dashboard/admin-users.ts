import type Database from 'better-sqlite3'

/** A dashboard administrator as stored, password hash included. */
export interface AdminUser {
  id: number
  username: string
  passwordHash: string
  createdAt: string
}

/** User names: 1 to 64 letters, digits and . _ @ -, so they are safe to show and log. */
export const USERNAME_PATTERN = /^[A-Za-z0-9._@-]{1,64}$/

interface AdminRow {
  id: number
  username: string
  password_hash: string
  created_at: string
}

export interface AdminUserStore {
  find(username: string): AdminUser | undefined
  findById(id: number): AdminUser | undefined
  list(): AdminUser[]
  /** Adds a user; returns false when the name is taken. */
  create(username: string, passwordHash: string): boolean
  /** Replaces a user's password and ends their sessions; returns false for an unknown user. */
  setPassword(username: string, passwordHash: string): boolean
  /** Deletes a user and their sessions; returns false for an unknown user. */
  remove(username: string): boolean
}

function toAdminUser(row: AdminRow): AdminUser {
  return {
    id: row.id,
    username: row.username,
    passwordHash: row.password_hash,
    createdAt: row.created_at,
  }
}

/** Creates the admin user store over the shared, migrated database. */
export function createAdminUserStore(db: Database.Database): AdminUserStore {
  const selectByName = db.prepare<[string], AdminRow>(
    'SELECT id, username, password_hash, created_at FROM admin_users WHERE username = ?',
  )
  const selectById = db.prepare<[number], AdminRow>(
    'SELECT id, username, password_hash, created_at FROM admin_users WHERE id = ?',
  )
  const selectAll = db.prepare<[], AdminRow>(
    'SELECT id, username, password_hash, created_at FROM admin_users ORDER BY username',
  )
  const insert = db.prepare<[string, string, string, string]>(`
    INSERT INTO admin_users (username, password_hash, created_at, password_changed_at)
    VALUES (?, ?, ?, ?) ON CONFLICT (username) DO NOTHING
  `)
  const updatePassword = db.prepare<[string, string, string]>(
    'UPDATE admin_users SET password_hash = ?, password_changed_at = ? WHERE username = ?',
  )
  const deleteSessions = db.prepare<[string]>(
    'DELETE FROM dashboard_sessions WHERE admin_id = (SELECT id FROM admin_users WHERE username = ?)',
  )
  const deleteUser = db.prepare<[string]>('DELETE FROM admin_users WHERE username = ?')

  // A new password or a deleted user must not leave a session signed in.
  const changePassword = db.transaction((username: string, passwordHash: string) => {
    deleteSessions.run(username)
    return updatePassword.run(passwordHash, new Date().toISOString(), username).changes > 0
  })
  const removeUser = db.transaction((username: string) => {
    deleteSessions.run(username)
    return deleteUser.run(username).changes > 0
  })

  return {
    find(username) {
      const row = selectByName.get(username)
      return row === undefined ? undefined : toAdminUser(row)
    },

    findById(id) {
      const row = selectById.get(id)
      return row === undefined ? undefined : toAdminUser(row)
    },

    list() {
      return selectAll.all().map(toAdminUser)
    },

    create(username, passwordHash) {
      const now = new Date().toISOString()
      return insert.run(username, passwordHash, now, now).changes > 0
    },

    setPassword(username, passwordHash) {
      return changePassword.immediate(username, passwordHash)
    },

    remove(username) {
      return removeUser.immediate(username)
    },
  }
}
