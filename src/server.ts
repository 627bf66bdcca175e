import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildApp } from './app.js'
import { type Config, DEFAULT_CERT_DIR } from './config.js'
import { ensureDevCertificates } from './dev-certs.js'
import { createLoginExporter } from './export.js'
import { startOperations } from './operations.js'
import { createSqliteStore, openDatabase } from './sqlite-store.js'
import { EXPIRY_WARNING_DAYS, loadTlsMaterial, tlsServerOptions } from './tls.js'
import { createTokenVerifier, loadOrCreateTokenFile, type TokenSet } from './tokens.js'
import { createWriteQueue } from './write-queue.js'

export interface RunningServer {
  app: FastifyInstance
  /** The HTTPS base URL, with the port actually bound. */
  url: string
  /** The Prometheus scrape URL, or undefined when METRICS_PORT is not set. */
  metricsUrl: string | undefined
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
  const db = openDatabase({ path: config.dbPath, synchronous: config.synchronous })
  const store = createSqliteStore(db)
  const queue = createWriteQueue({
    commit: (logins) => store.commitBatch(logins),
    maxBatchSize: config.maxBatchSize,
    batchDelayMs: config.batchDelayMs,
    maxQueued: config.maxQueued,
    logger,
  })

  let app: FastifyInstance
  let operations: Awaited<ReturnType<typeof startOperations>> | undefined
  try {
    operations = await startOperations(
      config,
      { db, queue, certificateValidTo: () => tls.validTo },
      logger,
    )
    const exporter = createLoginExporter(db)
    app = await buildApp({ store, queue, tokens, exporter, logger, https: tlsServerOptions(tls) })
    await app.listen({ host: config.host, port: config.port })
  } catch (error) {
    await operations?.close()
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
    metricsUrl: operations.metricsUrl,
    close() {
      closing ??= (async () => {
        await app.close()
        await operations.close()
        await queue.close()
        store.checkpoint()
        store.close()
        logger.info({ committedLogins: queue.stats().committedLogins }, 'server stopped')
      })()

      return closing
    },
  }
}
