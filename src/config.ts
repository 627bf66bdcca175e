import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_LOGINS } from './limits.js'
import type { SynchronousMode } from './sqlite-store.js'
import { checkManagedToken, MANAGED_TOKEN_PREFIX } from './token-format.js'
import { isWellFormedToken, RECOMMENDED_TOKEN_LENGTH, splitTokenList } from './tokens.js'

export const DEFAULT_CERT_DIR = 'certs'
export const DEFAULT_DB_PATH = join('data', 'metrics.db')

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
  /** File of the generated tokens, used when none are configured. */
  tokenFilePath: string
  logLevel: string
  synchronous: SynchronousMode
  maxBatchSize: number
  batchDelayMs: number
  maxQueued: number
  /** Device limit of the Standard plan, which every account starts on. */
  standardPlanDevices: number
  /** Device limit of the Enterprise plan. */
  enterprisePlanDevices: number
  /** Minutes without a request after which a dashboard session ends. */
  dashboardIdleMinutes: number
  /** Hours after sign-in after which a dashboard session ends however active it is. */
  dashboardSessionMaxHours: number
  /** Requests per second each token may send; 0 turns the limit off. */
  rateLimitPerSecond: number
  rateLimitBurst: number
  /** CA file whose client certificates the server requires (mutual TLS); undefined: none required. */
  clientCaPath: string | undefined
  /** Maximum logins in one POST /metrics/batch request. */
  batchMaxLogins: number
  /** Maximum body of POST /metrics/batch in bytes, after decompression. */
  batchMaxBytes: number
  metricsHost: string
  /** Port of the plain-HTTP Prometheus listener; undefined leaves it off. */
  metricsPort: number | undefined
  /** Logins older than this many milliseconds are deleted; undefined keeps every login. */
  retentionMs: number | undefined
  /** Whether batches commit on a worker thread, where an fsync does not block the event loop. */
  commitThread: boolean
  /** Processes that terminate TLS, each with its own writer into the one database. */
  workers: number
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
  'standard-plan-devices': {
    env: 'STANDARD_PLAN_DEVICES',
    help: 'device limit of the Standard plan (default 100)',
  },
  'enterprise-plan-devices': {
    env: 'ENTERPRISE_PLAN_DEVICES',
    help: 'device limit of the Enterprise plan (default 1000)',
  },
  'dashboard-idle-minutes': {
    env: 'DASHBOARD_IDLE_MINUTES',
    help: 'minutes of inactivity that end a dashboard session (default 30)',
  },
  'dashboard-session-max-hours': {
    env: 'DASHBOARD_SESSION_MAX_HOURS',
    help: 'hours after sign-in that end a dashboard session in any case (default 12)',
  },
  'rate-limit': {
    env: 'RATE_LIMIT',
    help: 'requests per second each token may send, then 429 (default 0: no limit)',
  },
  'rate-limit-burst': {
    env: 'RATE_LIMIT_BURST',
    help: 'requests a token may send at once above the rate (default 10 times the rate)',
  },
  'client-ca': {
    env: 'CLIENT_CA',
    help: 'PEM CA file: require client certificates it signed, besides the token (mutual TLS)',
  },
  'batch-max-logins': {
    env: 'BATCH_MAX_LOGINS',
    help: `max logins in one POST /metrics/batch request (default ${DEFAULT_BATCH_MAX_LOGINS})`,
  },
  'batch-max-bytes': {
    env: 'BATCH_MAX_BYTES',
    help: `max POST /metrics/batch body in bytes, after decompression (default ${DEFAULT_BATCH_MAX_BYTES})`,
  },
  'metrics-host': {
    env: 'METRICS_HOST',
    help: 'address of the plain-HTTP Prometheus listener (default 127.0.0.1)',
  },
  'metrics-port': {
    env: 'METRICS_PORT',
    help: 'port of the Prometheus listener at /metrics (default: off)',
  },
  retention: {
    env: 'RETENTION',
    help: 'delete logins older than this, such as 90d or 12h (default: off, keep all)',
  },
  'commit-thread': {
    env: 'COMMIT_THREAD',
    help: 'commit batches on a worker thread: on or off (default off)',
  },
  workers: {
    env: 'WORKERS',
    help: 'server processes sharing the port and the database (default 1)',
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

const RETENTION_UNITS_MS = { h: 3_600_000, d: 86_400_000 } as const
// About 100 years: anything longer is a typo, and keeps the cutoff arithmetic far from overflow.
const MAX_RETENTION_MS = 36_500 * 86_400_000

/** Reads a retention period such as `90d` or `12h` into milliseconds; `off` or nothing is undefined. */
export function parseRetention(text: string | undefined): number | undefined {
  if (text === undefined || text.toLowerCase() === 'off') {
    return undefined
  }

  const match = /^(\d+)([hd])$/.exec(text)
  const ms =
    match === null
      ? Number.NaN
      : Number(match[1]) * RETENTION_UNITS_MS[match[2] as keyof typeof RETENTION_UNITS_MS]
  if (!(ms >= RETENTION_UNITS_MS.h && ms <= MAX_RETENTION_MS)) {
    throw new ConfigError(
      `invalid RETENTION (--retention) ${JSON.stringify(text)}: expected a whole number of hours or days from 1h to 36500d, such as 90d or 12h, or off`,
    )
  }

  return ms
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
    if (checkManagedToken(token).kind === 'invalid') {
      throw new ConfigError(
        `invalid ${OPTIONS[name].env}: token ${index + 1} starts with ${MANAGED_TOKEN_PREFIX} but is not a valid managed token (wrong length or checksum); copy it again`,
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
  const dbPath = resolve(value('db-path') ?? DEFAULT_DB_PATH)
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

  const standardPlanDevices = parseInteger(
    'standard-plan-devices',
    value('standard-plan-devices') ?? '100',
    1,
    10_000_000,
  )
  const enterprisePlanDevices = parseInteger(
    'enterprise-plan-devices',
    value('enterprise-plan-devices') ?? '1000',
    1,
    10_000_000,
  )
  if (enterprisePlanDevices <= standardPlanDevices) {
    throw new ConfigError(
      `ENTERPRISE_PLAN_DEVICES (${enterprisePlanDevices}) must be larger than STANDARD_PLAN_DEVICES (${standardPlanDevices}), so upgrading adds devices`,
    )
  }
  const rateLimitPerSecond = parseInteger('rate-limit', value('rate-limit') ?? '0', 0, 10_000_000)
  const clientCa = value('client-ca')
  const maxQueued = parseInteger('queue-max', value('queue-max') ?? '10000', 1, 10_000_000)
  // Unset, the batch limit follows a smaller queue, so lowering QUEUE_MAX
  // alone is a valid configuration; set explicitly, it must fit the queue.
  const batchMaxLogins = parseInteger(
    'batch-max-logins',
    value('batch-max-logins') ?? String(Math.min(DEFAULT_BATCH_MAX_LOGINS, maxQueued)),
    1,
    100_000,
  )
  if (batchMaxLogins > maxQueued) {
    throw new ConfigError(
      `BATCH_MAX_LOGINS (${batchMaxLogins}) is larger than QUEUE_MAX (${maxQueued}), so a full batch could never be queued; lower it or raise QUEUE_MAX`,
    )
  }
  const metricsPort = value('metrics-port')
  const commitThread = (value('commit-thread') ?? 'off').toLowerCase()
  if (commitThread !== 'on' && commitThread !== 'off') {
    throw new ConfigError(
      `invalid COMMIT_THREAD ${JSON.stringify(commitThread)}: expected on or off`,
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
    maxQueued,
    batchMaxLogins,
    batchMaxBytes: parseInteger(
      'batch-max-bytes',
      value('batch-max-bytes') ?? String(DEFAULT_BATCH_MAX_BYTES),
      1024,
      64 * 1024 * 1024,
    ),
    standardPlanDevices,
    enterprisePlanDevices,
    dashboardIdleMinutes: parseInteger(
      'dashboard-idle-minutes',
      value('dashboard-idle-minutes') ?? '30',
      1,
      1440,
    ),
    dashboardSessionMaxHours: parseInteger(
      'dashboard-session-max-hours',
      value('dashboard-session-max-hours') ?? '12',
      1,
      720,
    ),
    rateLimitPerSecond,
    rateLimitBurst: parseInteger(
      'rate-limit-burst',
      value('rate-limit-burst') ?? String(Math.max(1, rateLimitPerSecond * 10)),
      1,
      100_000_000,
    ),
    clientCaPath: clientCa === undefined ? undefined : resolve(clientCa),
    metricsHost: value('metrics-host') ?? '127.0.0.1',
    metricsPort:
      metricsPort === undefined ? undefined : parseInteger('metrics-port', metricsPort, 0, 65_535),
    retentionMs: parseRetention(value('retention')),
    commitThread: commitThread === 'on',
    workers: parseInteger('workers', value('workers') ?? '1', 1, 256),
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
  const flagWidth = Math.max(...Object.keys(OPTIONS).map((name) => name.length)) + 2
  const envWidth = Math.max(...Object.values(OPTIONS).map((option) => option.env.length))
  const lines = Object.entries(OPTIONS).map(
    ([name, option]) =>
      `  ${`--${name}`.padEnd(flagWidth)} ${option.env.padEnd(envWidth)} ${option.help}`,
  )

  return [
    'Usage: iot-metrics [start] [options]',
    '       iot-metrics admin <create|passwd|delete|list> [NAME] (dashboard users; admin --help)',
    '       iot-metrics tokens create|list|revoke (run iot-metrics tokens help)',
    '       iot-metrics backup FILE [--db-path PATH]   (iot-metrics backup --help)',
    '',
    'Options (flag, environment variable, meaning); a flag wins over its variable:',
    ...lines,
    '',
    'Tokens given as flags are visible in the process list; prefer the environment.',
  ].join('\n')
}
