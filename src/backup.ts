import { closeSync, existsSync, fsyncSync, linkSync, openSync, statSync, unlinkSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { Worker } from 'node:worker_threads'
import Database from 'better-sqlite3'

export interface BackupOptions {
  /** The live database file. */
  source: string
  /** The copy to write; it must not exist yet. */
  target: string
  /** Called about five times a second with bytes written and the estimated total. */
  onProgress?: (written: number, estimatedTotal: number) => void
  /** How long the copy waits for a lock held by another connection. */
  busyTimeoutMs?: number
}

export interface BackupResult {
  target: string
  bytes: number
  logins: number
  accounts: number
  schemaVersion: number
  durationMs: number
}

/** A backup that cannot start or fails; the command prints its message. */
export class BackupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BackupError'
  }
}

const PROGRESS_INTERVAL_MS = 200

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/** Runs VACUUM INTO in a worker thread and reports the growing size of the copy. */
async function vacuumInto(options: BackupOptions, partial: string): Promise<void> {
  const worker = new Worker(new URL('./backup-worker.js', import.meta.url), {
    workerData: {
      source: options.source,
      target: partial,
      busyTimeoutMs: options.busyTimeoutMs ?? 30_000,
    },
  })

  let estimate = 0
  const report = () => {
    const written = existsSync(partial) ? statSync(partial).size : 0
    options.onProgress?.(Math.min(written, estimate), estimate)
  }
  const timer = setInterval(report, PROGRESS_INTERVAL_MS)

  try {
    await new Promise<void>((resolvePromise, reject) => {
      worker.on('message', (message: { type: string; bytes: number }) => {
        if (message.type === 'estimate') {
          estimate = message.bytes
          report()
        }
      })
      worker.once('error', reject)
      worker.once('exit', (code) => {
        if (code === 0) {
          resolvePromise()
        } else {
          reject(new Error(`the backup worker exited with code ${code}`))
        }
      })
    })
  } finally {
    clearInterval(timer)
  }
  const written = statSync(partial).size
  options.onProgress?.(written, written)
}

/** Opens the finished copy read-only, checks its integrity and counts its rows. */
function verifyCopy(path: string): Omit<BackupResult, 'target' | 'bytes' | 'durationMs'> {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const check = db.pragma('quick_check', { simple: true })
    if (check !== 'ok') {
      throw new BackupError(`the copy ${path} failed its integrity check: ${String(check)}`)
    }
    const count = (sql: string) => (db.prepare(sql).get() as { n: number | null }).n ?? 0

    return {
      logins: count('SELECT count(*) AS n FROM logins'),
      accounts: count('SELECT count(*) AS n FROM accounts'),
      schemaVersion: count('SELECT max(version) AS n FROM schema_migrations'),
    }
  } finally {
    db.close()
  }
}

/**
 * Writes a consistent copy of the database while the server keeps
 * ingesting. SQLite's VACUUM INTO reads one snapshot in a single read
 * transaction, which WAL mode lets run beside the writer, where the online
 * backup API would restart its copy after every commit of another process.
 * The copy is written under a temporary name, synced, checked, and only
 * then given the target name, so the target never contains a partial copy.
 */
export async function backupDatabase(options: BackupOptions): Promise<BackupResult> {
  const source = resolve(options.source)
  const target = resolve(options.target)
  if (!existsSync(source)) {
    throw new BackupError(`no database at ${source}; pass --db-path or set DB_PATH`)
  }
  if (source === target) {
    throw new BackupError('the backup file must differ from the database file')
  }
  if (existsSync(target)) {
    throw new BackupError(`${target} already exists; remove it or choose another file name`)
  }
  if (!existsSync(dirname(target))) {
    throw new BackupError(`the folder ${dirname(target)} does not exist`)
  }

  const started = process.hrtime.bigint()
  const partial = `${target}.partial-${process.pid}`
  try {
    await vacuumInto({ ...options, source }, partial)
    fsyncPath(partial)
    const counts = verifyCopy(partial)
    // link fails when the target appeared meanwhile, where rename would replace it.
    linkSync(partial, target)
    unlinkSync(partial)
    fsyncPath(dirname(target))

    return {
      target,
      bytes: statSync(target).size,
      ...counts,
      durationMs: Number(process.hrtime.bigint() - started) / 1e6,
    }
  } catch (error) {
    if (existsSync(partial)) {
      unlinkSync(partial)
    }
    if (error instanceof BackupError) {
      throw error
    }
    throw new BackupError(`backup failed: ${(error as Error).message}`, { cause: error })
  }
}
