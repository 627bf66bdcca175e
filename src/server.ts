import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildApp } from './app.js'
import { type Config, DEFAULT_CERT_DIR } from './config.js'
import { ensureDevCertificates } from './dev-certs.js'
import { trackInFlightRequests } from './in-flight.js'
import { createReadiness } from './readiness.js'
import { openSqliteStore } from './sqlite-store.js'
import { EXPIRY_WARNING_DAYS, loadTlsMaterial, tlsServerOptions } from './tls.js'
import { createTokenVerifier, loadOrCreateTokenFile, type TokenSet } from './tokens.js'
import { createWriteQueue } from './write-queue.js'

// How long shutdown waits for the replies to logins committed during the drain.
const DRAIN_REPLY_TIMEOUT_MS = 5000

export interface RunningServer {
  app: FastifyInstance
  /** The HTTPS base URL, with the port actually bound. */
  url: string
  /** Stops accepting requests, commits every queued login, closes the database. */
  close(): Promise<void>
}

function resolveTokens(config: Config, logger: Logger): TokenSet {
  if (config.ingestTokens.length > 0) {
    return { ingest: config.ingestTokens, read: config.readTokens }
  }

  const { tokens, created } = loadOrCreateTokenFile(config.tokenFilePath)
  logger.info(
    { tokenFile: config.tokenFilePath, created },
    created
      ? 'no tokens configured; generated one ingest and one read token'
      : 'no tokens configured; using the generated tokens',
  )

  return tokens
}

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
  if (tls.daysToExpiry < EXPIRY_WARNING_DAYS) {
    logger.warn(
      {
        certificate: config.tlsCertPath,
        validTo: tls.validTo.toISOString(),
        daysToExpiry: tls.daysToExpiry,
      },
      'the TLS certificate expires soon; replace it',
    )
  }

  const tokens = createTokenVerifier(resolveTokens(config, logger))
  const store = openSqliteStore({
    path: config.dbPath,
    synchronous: config.synchronous,
    busyTimeoutMs: config.busyTimeoutMs,
  })
  const queue = createWriteQueue({
    commit: (logins) => store.commitBatch(logins),
    maxBatchSize: config.maxBatchSize,
    batchDelayMs: config.batchDelayMs,
    maxQueued: config.maxQueued,
    logger,
  })

  const readiness = createReadiness({
    queueStats: () => queue.stats(),
    probeWrite: () => store.probeWrite(),
    logger,
  })

  let app: FastifyInstance
  let inFlight: ReturnType<typeof trackInFlightRequests>
  try {
    app = await buildApp({
      store,
      queue,
      tokens,
      logger,
      https: tlsServerOptions(tls),
      limits: config.connectionLimits,
      readiness,
    })
    inFlight = trackInFlightRequests(app)
    await app.listen({ host: config.host, port: config.port })
  } catch (error) {
    readiness.close()
    store.close()
    throw error
  }

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
      certificateDaysToExpiry: tls.daysToExpiry,
    },
    'server listening',
  )

  let closing: Promise<void> | undefined
  return {
    app,
    url,
    close() {
      closing ??= (async () => {
        // Close the queue first: it rejects new logins with 503 and commits
        // the queued ones. Their replies are written before app.close(),
        // which destroys connections whose reply is still pending.
        readiness.markShuttingDown()
        await queue.close()
        await inFlight.settle(DRAIN_REPLY_TIMEOUT_MS)
        await app.close()
        readiness.close()
        store.checkpoint()
        store.close()
        logger.info({ committedLogins: queue.stats().committedLogins }, 'server stopped')
      })()

      return closing
    },
  }
}
