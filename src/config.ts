import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import type { SynchronousMode } from './sqlite-store.js'
import { isWellFormedToken, RECOMMENDED_TOKEN_LENGTH, splitTokenList } from './tokens.js'

export const DEFAULT_CERT_DIR = 'certs'

export interface Config {
  host: string
  port: number
  dbPath: string
  tlsCertPath: string
  tlsKeyPath: string
  /** The CA that signed the server certificate; only shown to users, the server does not load it. */
  tlsCaPath: string
  /** True when no certificate was configured, so `start` may generate dev certificates. */
  usesDefaultCertificates: boolean
  ingestTokens: string[]
  readTokens: string[]
  /** Where generated tokens are kept when none are configured. */
  tokenFilePath: string
  logLevel: string
  synchronous: SynchronousMode
  maxBatchSize: number
  batchDelayMs: number
  maxQueued: number
  /** How long a write waits for another process's lock before the batch fails with 503. */
  busyTimeoutMs: number
  /** Limits that keep slow or idle clients from holding the server. */
  connectionLimits: ConnectionLimits
  /** Problems worth a warning at start that do not stop it. */
  warnings: string[]
}

/** Time limits and the connection cap of the HTTPS server, in milliseconds and connections. */
export interface ConnectionLimits {
  /** Max time to receive a request's complete header block. */
  headersTimeoutMs: number
  /** Max time to receive a complete request, body included. */
  requestTimeoutMs: number
  /** How long an idle keep-alive connection stays open. */
  keepAliveTimeoutMs: number
  /** Max open connections; beyond it new connections are closed at once. */
  maxConnections: number
}

/** A configuration problem; the command prints its message on one line and exits. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const SYNCHRONOUS_MODES: readonly SynchronousMode[] = ['FULL', 'EXTRA', 'NORMAL']

/** Each option: its flag, the environment variable behind it, and its help line. */
export const OPTIONS = {
  host: { env: 'HOST', help: 'address to listen on (default 127.0.0.1)' },
  port: { env: 'PORT', help: 'TCP port for HTTPS (default 8443)' },
  'db-path': { env: 'DB_PATH', help: 'SQLite database file (default data/metrics.db)' },
  'tls-cert': { env: 'TLS_CERT', help: 'PEM certificate chain (default certs/server-cert.pem)' },
  'tls-key': { env: 'TLS_KEY', help: 'PEM private key (default certs/server-key.pem)' },
  'tls-ca': {
    env: 'TLS_CA',
    help: 'CA file clients should trust, shown at start (default certs/ca-cert.pem)',
  },
  'ingest-tokens': { env: 'INGEST_TOKENS', help: 'comma-separated tokens that may POST /metrics' },
  'read-tokens': {
    env: 'READ_TOKENS',
    help: 'comma-separated tokens that may use the GET endpoints',
  },
  'log-level': { env: 'LOG_LEVEL', help: `one of ${LOG_LEVELS.join(', ')} (default info)` },
  synchronous: {
    env: 'SQLITE_SYNCHRONOUS',
    help: 'SQLite synchronous mode: FULL, EXTRA or NORMAL (default FULL)',
  },
  'batch-size': { env: 'BATCH_SIZE', help: 'max logins per transaction (default 1000)' },
  'batch-delay-ms': {
    env: 'BATCH_DELAY_MS',
    help: 'max wait before a batch commits, in ms (default 0: next event-loop turn)',
  },
  'queue-max': {
    env: 'QUEUE_MAX',
    help: 'max logins waiting to commit before 503 (default 10000)',
  },
  'busy-timeout-ms': {
    env: 'BUSY_TIMEOUT_MS',
    help: 'how long a commit waits for another process holding the database lock, in ms (default 5000)',
  },
  'headers-timeout-ms': {
    env: 'HEADERS_TIMEOUT_MS',
    help: 'max time to receive the request headers, in ms (default 10000)',
  },
  'request-timeout-ms': {
    env: 'REQUEST_TIMEOUT_MS',
    help: 'max time to receive a whole request, in ms (default 30000)',
  },
  'keep-alive-timeout-ms': {
    env: 'KEEP_ALIVE_TIMEOUT_MS',
    help: 'how long an idle keep-alive connection stays open, in ms (default 72000)',
  },
  'max-connections': {
    env: 'MAX_CONNECTIONS',
    help: 'max open client connections; more are closed at once (default 10000)',
  },
} as const

type OptionName = keyof typeof OPTIONS

function parseInteger(name: OptionName, text: string, min: number, max: number): number {
  const value = Number(text)
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    throw new ConfigError(
      `invalid ${OPTIONS[name].env} (--${name}) ${JSON.stringify(text)}: expected a whole number from ${min} to ${max}`,
    )
  }

  return value
}

function parseTokens(
  name: 'ingest-tokens' | 'read-tokens',
  text: string | undefined,
  warnings: string[],
): string[] {
  const tokens = splitTokenList(text ?? '')
  for (const [index, token] of tokens.entries()) {
    // The message names the position, never the token itself.
    if (!isWellFormedToken(token)) {
      throw new ConfigError(
        `invalid ${OPTIONS[name].env}: token ${index + 1} contains characters a bearer token cannot have (allowed: letters, digits and -._~+/ with trailing =)`,
      )
    }
    if (token.length < RECOMMENDED_TOKEN_LENGTH) {
      warnings.push(
        `${OPTIONS[name].env} token ${index + 1} is ${token.length} characters long; use at least ${RECOMMENDED_TOKEN_LENGTH} random characters`,
      )
    }
  }

  return tokens
}

/**
 * Reads the configuration from command-line flags and the environment;
 * a flag wins over its environment variable. Throws ConfigError on the
 * first invalid value.
 */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  let flags: Partial<Record<OptionName, string>>
  try {
    const options = Object.fromEntries(
      Object.keys(OPTIONS).map((name) => [name, { type: 'string' as const }]),
    )
    flags = parseArgs({ args: argv, options, strict: true, allowPositionals: false })
      .values as typeof flags
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}; run with --help for the options`)
  }

  const value = (name: OptionName): string | undefined => {
    const text = flags[name] ?? env[OPTIONS[name].env]
    return text === undefined || text.trim() === '' ? undefined : text.trim()
  }

  const warnings: string[] = []
  const dbPath = resolve(value('db-path') ?? join('data', 'metrics.db'))
  const certPath = value('tls-cert')
  const keyPath = value('tls-key')
  if ((certPath === undefined) !== (keyPath === undefined)) {
    throw new ConfigError(
      'TLS_CERT and TLS_KEY must be set together (or neither, for the dev certificates)',
    )
  }

  const logLevel = value('log-level') ?? 'info'
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(
      `invalid LOG_LEVEL ${JSON.stringify(logLevel)}: expected one of ${LOG_LEVELS.join(', ')}`,
    )
  }

  const synchronous = (value('synchronous') ?? 'FULL').toUpperCase() as SynchronousMode
  if (!SYNCHRONOUS_MODES.includes(synchronous)) {
    throw new ConfigError(
      `invalid SQLITE_SYNCHRONOUS ${JSON.stringify(synchronous)}: expected one of ${SYNCHRONOUS_MODES.join(', ')}`,
    )
  }

  const ingestTokens = parseTokens('ingest-tokens', value('ingest-tokens'), warnings)
  const readTokens = parseTokens('read-tokens', value('read-tokens'), warnings)
  if ((ingestTokens.length === 0) !== (readTokens.length === 0)) {
    throw new ConfigError(
      'INGEST_TOKENS and READ_TOKENS must be set together, or neither to have tokens generated',
    )
  }
  if (ingestTokens.some((token) => readTokens.includes(token))) {
    throw new ConfigError(
      'a token appears in both INGEST_TOKENS and READ_TOKENS; give each scope its own tokens',
    )
  }

  return {
    host: value('host') ?? '127.0.0.1',
    port: parseInteger('port', value('port') ?? '8443', 0, 65_535),
    dbPath,
    tlsCertPath: resolve(certPath ?? join(DEFAULT_CERT_DIR, 'server-cert.pem')),
    tlsKeyPath: resolve(keyPath ?? join(DEFAULT_CERT_DIR, 'server-key.pem')),
    tlsCaPath: resolve(value('tls-ca') ?? join(DEFAULT_CERT_DIR, 'ca-cert.pem')),
    usesDefaultCertificates: certPath === undefined,
    ingestTokens,
    readTokens,
    tokenFilePath: join(dirname(dbPath), 'tokens.env'),
    logLevel,
    synchronous,
    maxBatchSize: parseInteger('batch-size', value('batch-size') ?? '1000', 1, 100_000),
    batchDelayMs: parseInteger('batch-delay-ms', value('batch-delay-ms') ?? '0', 0, 1000),
    maxQueued: parseInteger('queue-max', value('queue-max') ?? '10000', 1, 10_000_000),
    busyTimeoutMs: parseInteger('busy-timeout-ms', value('busy-timeout-ms') ?? '5000', 0, 600_000),
    connectionLimits: parseConnectionLimits(value),
    warnings,
  }
}

function parseConnectionLimits(value: (name: OptionName) => string | undefined): ConnectionLimits {
  const limits = {
    headersTimeoutMs: parseInteger(
      'headers-timeout-ms',
      value('headers-timeout-ms') ?? '10000',
      1,
      3_600_000,
    ),
    requestTimeoutMs: parseInteger(
      'request-timeout-ms',
      value('request-timeout-ms') ?? '30000',
      1,
      3_600_000,
    ),
    keepAliveTimeoutMs: parseInteger(
      'keep-alive-timeout-ms',
      value('keep-alive-timeout-ms') ?? '72000',
      1,
      3_600_000,
    ),
    maxConnections: parseInteger(
      'max-connections',
      value('max-connections') ?? '10000',
      1,
      1_000_000,
    ),
  }
  // Node checks the header deadline inside the request deadline, so a larger one would never fire.
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new ConfigError(
      `HEADERS_TIMEOUT_MS (${limits.headersTimeoutMs}) must not exceed REQUEST_TIMEOUT_MS (${limits.requestTimeoutMs})`,
    )
  }

  return limits
}

/** Renders the help text of `iot-metrics start`. */
export function helpText(): string {
  const lines = Object.entries(OPTIONS).map(
    ([name, option]) => `  --${name.padEnd(16)} ${option.env.padEnd(20)} ${option.help}`,
  )

  return [
    'Usage: iot-metrics [start] [options]',
    '',
    'Options (flag, environment variable, meaning); a flag wins over its variable:',
    ...lines,
    '',
    'Tokens given as flags are visible in the process list; prefer the environment.',
  ].join('\n')
}
