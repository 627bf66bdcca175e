import { accessSync, constants, existsSync } from 'node:fs'
import { dirname } from 'node:path'

/**
 * Returns the first of the database's files (the database, its WAL and
 * shared-memory files, their folder) that this process cannot write, with
 * the system error, or undefined when all are writable. SQLite reports a
 * file made read-only under an open connection as a generic I/O error, so
 * this check separates that case. `access(2)` honours the immutable attribute and
 * read-only mounts even for root, which ignores permission bits.
 */
export function findUnwritableFile(dbPath: string): { path: string; code: string } | undefined {
  const candidates = [dbPath, `${dbPath}-wal`, `${dbPath}-shm`].filter((path) => existsSync(path))
  candidates.push(dirname(dbPath))
  for (const path of candidates) {
    try {
      accessSync(path, constants.W_OK)
    } catch (error) {
      return { path, code: (error as NodeJS.ErrnoException).code ?? 'EACCES' }
    }
  }

  return undefined
}
