#!/usr/bin/env node
import cluster from 'node:cluster'
import { runBackupCommand } from './backup-command.js'
import { runPrimary } from './cluster.js'
import { AdminCommandError, runAdminCommand } from './commands/admin.js'
import { runTokensCommand } from './commands/tokens.js'
import { ConfigError, helpText, parseConfig } from './config.js'
import { createLogger } from './logger.js'
import type { RunningServer } from './server.js'

// Maximum time a shutdown may take before the process exits anyway.
const SHUTDOWN_TIMEOUT_MS = 10_000

function fail(message: string): never {
  process.stderr.write(`iot-metrics: ${message}\n`)
  process.exit(2)
}

async function start(argv: string[]): Promise<void> {
  let config: ReturnType<typeof parseConfig>
  try {
    config = parseConfig(argv, process.env)
  } catch (error) {
    if (error instanceof ConfigError) {
      fail(error.message)
    }
    throw error
  }

  // The primary and the workers of WORKERS=N write to one stdout.
  const logger = createLogger(config.logLevel, undefined, { sharedStdout: config.workers > 1 })
  if (config.workers > 1 && cluster.isPrimary) {
    runPrimary(config, logger)
    return
  }

  let server: RunningServer
  try {
    // Imported here so that the primary of WORKERS=N, which only forks,
    // does not load Fastify and the rest of the server into its memory.
    const { startServer } = await import('./server.js')
    server = await startServer(config, logger)
  } catch (error) {
    if (error instanceof ConfigError) {
      fail(error.message)
    }
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE' || code === 'EACCES') {
      fail(`cannot listen on ${config.host}:${config.port}: ${code}`)
    }
    throw error
  }

  let shuttingDown = false
  const shutdown = (signal: NodeJS.Signals) => {
    // Ctrl-C under `npm start` delivers SIGINT twice: the terminal sends it
    // to the whole process group and npm forwards its own copy. The handler
    // stays installed, because without it the second signal would kill the
    // process before the queue drained.
    if (shuttingDown) {
      logger.info({ signal }, 'already shutting down; the signal is ignored')
      return
    }
    shuttingDown = true
    logger.info({ signal }, 'shutting down: draining the write queue')
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: SHUTDOWN_TIMEOUT_MS }, 'shutdown timed out; exiting')
      process.exit(1)
    }, SHUTDOWN_TIMEOUT_MS)
    timer.unref()

    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  // SIGHUP, the usual "reload your configuration" signal, reloads the TLS files.
  process.on('SIGHUP', () => {
    server.reloadTls('SIGHUP')
  })
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv
  if (command === undefined || command.startsWith('-')) {
    if (command === '--help' || command === '-h') {
      process.stdout.write(`${helpText()}\n`)
      return
    }
    await start(argv)
    return
  }

  switch (command) {
    case 'start':
      await start(rest)
      return
    case 'tokens':
      process.exitCode = runTokensCommand(rest, process.env, {
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
      })
      return
    case 'backup':
      process.exitCode = await runBackupCommand(rest, process.env)
      return
    case 'help':
      process.stdout.write(`${helpText()}\n`)
      return
    case 'admin':
      try {
        process.stdout.write(`${await runAdminCommand(rest, process.env)}\n`)
      } catch (error) {
        if (error instanceof AdminCommandError) {
          fail(error.message)
        }
        throw error
      }
      return
    default:
      fail(`unknown command ${JSON.stringify(command)}; run iot-metrics --help`)
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`iot-metrics: ${(error as Error).stack ?? String(error)}\n`)
  process.exit(1)
})
