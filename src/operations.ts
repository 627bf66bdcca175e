import type Database from 'better-sqlite3'
import type { Logger } from 'pino'
import { type Config, ConfigError } from './config.js'
import { createMetrics } from './metrics.js'
import { startMetricsServer } from './metrics-server.js'
import { startRetention } from './retention.js'
import type { WriteQueue } from './write-queue.js'

export interface OperationsSources {
  db: Database.Database
  queue: WriteQueue
  /** The notAfter date of the server certificate in use. */
  certificateValidTo: () => Date
}

export interface RunningOperations {
  /** The Prometheus scrape URL, or undefined when METRICS_PORT is not set. */
  metricsUrl: string | undefined
  /** Stops retention and the metrics listener. */
  close(): Promise<void>
}

/**
 * Starts what runs beside the API as configured: the Prometheus listener
 * when METRICS_PORT is set, and retention when RETENTION is set.
 */
export async function startOperations(
  config: Config,
  sources: OperationsSources,
  logger: Logger,
): Promise<RunningOperations> {
  const metrics =
    config.metricsPort === undefined
      ? undefined
      : createMetrics({
          queueDepth: () => sources.queue.stats(),
          certificateValidTo: sources.certificateValidTo,
        })

  let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | undefined
  if (metrics !== undefined && config.metricsPort !== undefined) {
    try {
      metricsServer = await startMetricsServer(
        metrics.registry,
        config.metricsHost,
        config.metricsPort,
        logger,
      )
    } catch (error) {
      metrics.close()
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
        throw new ConfigError(
          `cannot listen for metrics on ${config.metricsHost}:${config.metricsPort}: ${code}; change METRICS_HOST or METRICS_PORT`,
        )
      }
      throw error
    }
    logger.info({ url: metricsServer.url }, 'metrics listening')
  }

  const retention =
    config.retentionMs === undefined
      ? undefined
      : startRetention({ db: sources.db, retentionMs: config.retentionMs, logger })
  if (config.retentionMs !== undefined) {
    logger.info(
      { retentionHours: config.retentionMs / 3_600_000 },
      'retention on: older logins are deleted in the background',
    )
  }

  return {
    metricsUrl: metricsServer?.url,
    async close() {
      await retention?.close()
      await metricsServer?.close()
      metrics?.close()
    },
  }
}
