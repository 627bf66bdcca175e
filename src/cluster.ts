import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import { type Config, DEFAULT_CERT_DIR } from './config.js'
import { ensureDevCertificates } from './dev-certs.js'
import { loadOrCreateTokenFile } from './tokens.js'

// A worker that exits on its own within this time of its start is not
// restarted, because it would most likely fail again the same way.
const MIN_WORKER_LIFETIME_MS = 5_000

/**
 * Runs the primary process of `--workers N`. It first creates what the
 * workers would otherwise race to create (dev certificates, the token file),
 * then forks N workers that each run the full server on the shared port, and
 * restarts a worker that dies. On SIGINT or SIGTERM it stops every worker
 * (each drains its own queue) and exits 0 once all have exited 0.
 */
export function runPrimary(config: Config, logger: Logger): void {
  if (config.usesDefaultCertificates) {
    ensureDevCertificates(DEFAULT_CERT_DIR)
  }
  if (config.ingestTokens.length === 0) {
    loadOrCreateTokenFile(config.tokenFilePath)
  }
  // The schema is left to the workers: each migrates in one IMMEDIATE
  // transaction that reads the version inside it, so the second finds the
  // first one's work done. The primary stays free of SQLite's memory.

  let stopping = false
  let failed = false
  const startedAt = new Map<Worker, number>()

  const fork = () => {
    startedAt.set(cluster.fork(), Date.now())
  }

  cluster.on('exit', (worker, code, signal) => {
    const lifetimeMs = Date.now() - (startedAt.get(worker) ?? 0)
    startedAt.delete(worker)
    if (code !== 0) {
      failed = true
    }

    if (stopping) {
      if (startedAt.size === 0) {
        logger.info({ workers: config.workers }, 'all workers stopped')
        process.exit(failed ? 1 : 0)
      }
      return
    }

    logger.error({ pid: worker.process.pid, code, signal, lifetimeMs }, 'a server worker exited')
    if (lifetimeMs >= MIN_WORKER_LIFETIME_MS) {
      fork()
    } else if (startedAt.size === 0) {
      process.exit(1)
    }
  })

  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) {
      return
    }
    stopping = true
    logger.info({ signal, workers: startedAt.size }, 'shutting down: stopping the workers')
    for (const worker of startedAt.keys()) {
      worker.process.kill('SIGTERM')
    }
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)

  logger.info({ workers: config.workers }, 'starting server workers')
  for (let index = 0; index < config.workers; index++) {
    fork()
  }
}
