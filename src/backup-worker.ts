import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'

// Runs VACUUM INTO in a worker thread: the statement is synchronous and can
// take minutes on a large database, and the main thread keeps drawing the
// progress bar meanwhile.

interface BackupJob {
  source: string
  target: string
  busyTimeoutMs: number
}

const job = workerData as BackupJob
const db = new Database(job.source, { fileMustExist: true })
try {
  db.pragma(`busy_timeout = ${job.busyTimeoutMs}`)
  const pageSize = db.pragma('page_size', { simple: true }) as number
  const pageCount = db.pragma('page_count', { simple: true }) as number
  const freePages = db.pragma('freelist_count', { simple: true }) as number
  parentPort?.postMessage({ type: 'estimate', bytes: (pageCount - freePages) * pageSize })

  // One read transaction copies a consistent snapshot; in WAL mode the
  // server keeps committing meanwhile.
  db.prepare('VACUUM INTO ?').run(job.target)
} finally {
  db.close()
}
