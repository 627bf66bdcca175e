import type { Server as TlsServer } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildApp } from './app.js'
import { type CommitThread, startCommitThread } from './commit-thread.js'
import { type Config, ConfigError, DEFAULT_CERT_DIR } from './config.js'
import { createDashboard } from './dashboard/index.js'
import { ensureDevCertificates } from './dev-certs.js'
import { createLoginExporter } from './export.js'
import { trackInFlightRequests } from './in-flight.js'
import { createManagedTokenCache } from './managed-tokens.js'
import { startOperations } from './operations.js'
import { createReadiness } from './readiness.js'
import { createSqliteStore, openDatabase } from './sqlite-store.js'
import { loadClientCa, loadTlsMaterial, tlsServerOptions } from './tls.js'
import { createTlsReloader } from './tls-reloader.js'
import { createTokenStore } from './token-store.js'
import { createTokenVerifier, loadOrCreateTokenFile, type TokenSet } from './tokens.js'
import { createWriteQueue } from './write-queue.js'

// How long shutdown waits for the replies to logins committed during the drain.
const DRAIN_REPLY_TIMEOUT_MS = 5000

export interface RunningServer {
  app: FastifyInstance
  /** The HTTPS base URL, with the port actually bound. */
  url: string
  /** Loads the certificate, key and client CA files again; false when they are unusable. */
  reloadTls(trigger: string): boolean
  /** Expiry of the certificate being served. */
  certificateValidTo(): Date
  /** The Prometheus scrape URL, or undefined when METRICS_PORT is not set. */
  metricsUrl: string | undefined
  /** Stops accepting requests, commits every queued login, closes the database. */
  close(): Promise<void>
}

function resolveTokens(config: Config, logger: Logger): TokenSet {
  if (config.ingestTokens.length > 0) {
    return { ingest: config.ingestTokens, read: config.readTokens }
  }

  let loaded: ReturnType<typeof loadOrCreateTokenFile>
  try {
    loaded = loadOrCreateTokenFile(config.tokenFilePath)
  } catch (error) {
    // A broken token file is a configuration problem: one line, exit 2.
    throw new ConfigError((error as Error).message)
  }
  const { tokens, created } = loaded
  logger.info(
    { tokenFile: config.tokenFilePath, created },
    created
      ? 'no tokens configured; generated one ingest and one read token'
      : 'no tokens configured; using the generated tokens',
  )

  return tokens
}

// Several server processes (WORKERS) write into one database, so a batch can
// find the write lock taken. The commit thread then tries again every quarter
// millisecond for about 5 s before it fails the batch's logins with a 503.
// SQLite's own busy handler would back off to sleeps of up to 100 ms, which
// showed as p99 latencies of half a second with two workers.
const BUSY_RETRY_DELAY_MS = 0.25
const BUSY_RETRIES = 20_000

/** Starts the HTTPS server described by `config` and returns once it listens. */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  for (const warning of config.warnings) {
    logger.warn(warning)
  }

  if (config.usesDefaultCertificates) {
    const { created } = ensureDevCertificates(DEFAULT_CERT_DIR)
    if (created) {
      logger.info({ dir: DEFAULT_CERT_DIR }, 'generated development certificates')
    }
  }
  const tls = loadTlsMaterial(config.tlsCertPath, config.tlsKeyPath)
  const clientCa = config.clientCaPath === undefined ? undefined : loadClientCa(config.clientCaPath)

  const configuredTokens = resolveTokens(config, logger)
  // This connection migrates the schema and serves the reads and the other
  // stores; with the commit thread on, the thread's own connection writes
  // every login.
  const db = openDatabase({
    path: config.dbPath,
    synchronous: config.synchronous,
    busyTimeoutMs: config.busyTimeoutMs,
  })
  // A commit on the event loop must not sleep in SQLite's busy handler, so
  // a batch that finds the write lock taken goes back to the queue, which
  // tries it again on timers for up to BUSY_TIMEOUT_MS.
  const store = createSqliteStore(db, { failFastWhenBusy: !config.commitThread })
  let commitThread: CommitThread | undefined
  try {
    commitThread = config.commitThread
      ? await startCommitThread({
          path: config.dbPath,
          synchronous: config.synchronous,
          busyRetries: BUSY_RETRIES,
          busyRetryDelayMs: BUSY_RETRY_DELAY_MS,
        })
      : undefined
  } catch (error) {
    store.close()
    throw error
  }
  const managedTokens = createManagedTokenCache({ db, store: createTokenStore(db), logger })
  const tokens = createTokenVerifier(configuredTokens, managedTokens)
  const queue = createWriteQueue({
    commit:
      commitThread === undefined
        ? (logins) => store.commitBatch(logins)
        : (logins) => (commitThread as CommitThread).commit(logins),
    maxBatchSize: config.maxBatchSize,
    batchDelayMs: config.batchDelayMs,
    maxQueued: config.maxQueued,
    busyRetryMs: config.commitThread ? 0 : config.busyTimeoutMs,
    logger,
  })

  const readiness = createReadiness({
    queueStats: () => queue.stats(),
    probeWrite: () => store.probeWrite(),
    logger,
  })

  let app: FastifyInstance
  let operations: Awaited<ReturnType<typeof startOperations>> | undefined
  // The reloader needs the listening server, so it is created after listen;
  // until then the certificate loaded above is the one served.
  let tlsReloader: ReturnType<typeof createTlsReloader> | undefined
  const certificateValidTo = () => tlsReloader?.validTo() ?? tls.validTo
  let inFlight: ReturnType<typeof trackInFlightRequests>
  try {
    operations = await startOperations(config, { db, queue, certificateValidTo }, logger)
    const exporter = createLoginExporter(db)
    const dashboard = createDashboard({
      db,
      logger,
      standardPlanDevices: config.standardPlanDevices,
      enterprisePlanDevices: config.enterprisePlanDevices,
      idleMinutes: config.dashboardIdleMinutes,
      sessionMaxHours: config.dashboardSessionMaxHours,
    })
    app = await buildApp({
      store,
      queue,
      tokens,
      exporter,
      logger,
      https: tlsServerOptions(tls, clientCa),
      rateLimit: { ratePerSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst },
      batchLimits: { maxLogins: config.batchMaxLogins, maxBytes: config.batchMaxBytes },
      limits: config.connectionLimits,
      readiness,
      dashboard,
    })
    inFlight = trackInFlightRequests(app)
    await app.listen({ host: config.host, port: config.port })
  } catch (error) {
    readiness.close()
    await operations?.close()
    managedTokens.close()
    await commitThread?.close()
    store.close()
    throw error
  }

  // The reloader logs the certificate's expiry now and after every reload.
  const reloader = createTlsReloader({
    server: app.server as unknown as TlsServer,
    certPath: config.tlsCertPath,
    keyPath: config.tlsKeyPath,
    clientCaPath: config.clientCaPath,
    initial: tls,
    logger,
  })
  tlsReloader = reloader

  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : config.port
  const host = config.host.includes(':') ? `[${config.host}]` : config.host
  const url = `https://${host}:${port}`
  logger.info(
    {
      url,
      caFile: config.tlsCaPath,
      tokenFile: config.ingestTokens.length > 0 ? null : config.tokenFilePath,
      database: config.dbPath,
      synchronous: config.synchronous,
      commitThread: config.commitThread,
      certificateDaysToExpiry: tls.daysToExpiry,
      clientCa: config.clientCaPath ?? null,
    },
    'server listening',
  )

  let closing: Promise<void> | undefined
  return {
    app,
    url,
    reloadTls: (trigger) => reloader.reload(trigger),
    certificateValidTo,
    metricsUrl: operations.metricsUrl,
    close() {
      closing ??= (async () => {
        reloader.close()
        // Close the queue first: it rejects new logins with 503 and commits
        // the queued ones. Their replies are written before app.close(),
        // which destroys connections whose reply is still pending.
        readiness.markShuttingDown()
        await queue.close()
        await inFlight.settle(DRAIN_REPLY_TIMEOUT_MS)
        await app.close()
        readiness.close()
        await operations.close()
        managedTokens.close()
        await commitThread?.close()
        store.checkpoint()
        store.close()
        logger.info({ committedLogins: queue.stats().committedLogins }, 'server stopped')
      })()

      return closing
    },
  }
}
