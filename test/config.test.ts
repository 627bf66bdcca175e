import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { ConfigError, helpText, OPTIONS, parseConfig } from '../src/config.js'

const INGEST_TOKEN = 'ingest-0123456789abcdefghijklmnopqrstuv'
const READ_TOKEN = 'read-0123456789abcdefghijklmnopqrstuvwx'

/** Calls parseConfig and returns the ConfigError it throws. Fails the test when it returns. */
function configError(argv: string[], env: NodeJS.ProcessEnv): ConfigError {
  try {
    parseConfig(argv, env)
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
    return error
  }

  return assert.fail(`parseConfig(${JSON.stringify(argv)}) returned instead of throwing`)
}

test('defaults without flags or environment', () => {
  const config = parseConfig([], {})

  assert.equal(config.port, 8443)
  assert.equal(config.host, '127.0.0.1')
  assert.equal(config.dbPath, resolve('data', 'metrics.db'))
  assert.equal(config.tokenFilePath, resolve('data', 'tokens.env'))
  assert.equal(config.tlsCertPath, resolve('certs', 'server-cert.pem'))
  assert.equal(config.tlsKeyPath, resolve('certs', 'server-key.pem'))
  assert.equal(config.tlsCaPath, resolve('certs', 'ca-cert.pem'))
  assert.equal(config.usesDefaultCertificates, true)
  assert.deepEqual(config.ingestTokens, [])
  assert.deepEqual(config.readTokens, [])
  assert.equal(config.logLevel, 'info')
  assert.equal(config.synchronous, 'FULL')
  assert.equal(config.maxBatchSize, 1000)
  assert.equal(config.batchDelayMs, 0)
  assert.equal(config.maxQueued, 10_000)
  assert.deepEqual(config.warnings, [])
})

test('reads every option from the environment', () => {
  const config = parseConfig([], {
    HOST: '::1',
    PORT: '9443',
    DB_PATH: 'var/db.sqlite',
    TLS_CERT: 'tls/cert.pem',
    TLS_KEY: 'tls/key.pem',
    TLS_CA: 'tls/ca.pem',
    INGEST_TOKENS: INGEST_TOKEN,
    READ_TOKENS: READ_TOKEN,
    LOG_LEVEL: 'debug',
    SQLITE_SYNCHRONOUS: 'normal',
    BATCH_SIZE: '50',
    BATCH_DELAY_MS: '5',
    QUEUE_MAX: '2000',
  })

  assert.equal(config.host, '::1')
  assert.equal(config.port, 9443)
  assert.equal(config.dbPath, resolve('var', 'db.sqlite'))
  assert.equal(config.tokenFilePath, resolve('var', 'tokens.env'))
  assert.equal(config.tlsCertPath, resolve('tls', 'cert.pem'))
  assert.equal(config.tlsKeyPath, resolve('tls', 'key.pem'))
  assert.equal(config.tlsCaPath, resolve('tls', 'ca.pem'))
  assert.equal(config.usesDefaultCertificates, false)
  assert.deepEqual(config.ingestTokens, [INGEST_TOKEN])
  assert.deepEqual(config.readTokens, [READ_TOKEN])
  assert.equal(config.logLevel, 'debug')
  assert.equal(config.synchronous, 'NORMAL')
  assert.equal(config.maxBatchSize, 50)
  assert.equal(config.batchDelayMs, 5)
  assert.equal(config.maxQueued, 2000)
})

test('flags win over the environment', () => {
  const env = { PORT: '9000', HOST: '0.0.0.0', DB_PATH: '/srv/env.db', LOG_LEVEL: 'warn' }

  const config = parseConfig(
    ['--port', '9443', '--host=::1', '--db-path', 'flag.db', '--log-level', 'error'],
    env,
  )

  assert.equal(config.port, 9443)
  assert.equal(config.host, '::1')
  assert.equal(config.dbPath, resolve('flag.db'))
  assert.equal(config.logLevel, 'error')
})

test('treats a blank variable as unset', () => {
  const config = parseConfig([], { PORT: '  ', HOST: '', INGEST_TOKENS: ' ', READ_TOKENS: '' })

  assert.equal(config.port, 8443)
  assert.equal(config.host, '127.0.0.1')
  assert.deepEqual(config.ingestTokens, [])
})

test('accepts port 0 and 65535', () => {
  assert.equal(parseConfig([], { PORT: '0' }).port, 0)
  assert.equal(parseConfig([], { PORT: '65535' }).port, 65_535)
})

test('rejects a bad port naming PORT', () => {
  for (const port of ['abc', '70000', '65536', '-1', '1.5', '8443x', '0x20FB']) {
    const error = configError([], { PORT: port })

    assert.match(error.message, /\bPORT\b/, port)
    assert.ok(error.message.includes(JSON.stringify(port)), error.message)
  }
})

test('rejects a bad port flag naming --port', () => {
  assert.match(configError(['--port', 'abc'], {}).message, /--port/)
})

test('rejects out-of-range queue settings', () => {
  assert.match(configError([], { BATCH_SIZE: '0' }).message, /\bBATCH_SIZE\b/)
  assert.match(configError([], { BATCH_DELAY_MS: '1001' }).message, /\bBATCH_DELAY_MS\b/)
  assert.match(configError([], { QUEUE_MAX: '0' }).message, /\bQUEUE_MAX\b/)
})

test('rejects an unknown log level', () => {
  assert.match(configError([], { LOG_LEVEL: 'verbose' }).message, /\bLOG_LEVEL\b/)
})

test('rejects an unknown synchronous mode', () => {
  assert.match(configError([], { SQLITE_SYNCHRONOUS: 'OFF' }).message, /\bSQLITE_SYNCHRONOUS\b/)
})

test('rejects TLS_CERT without TLS_KEY', () => {
  assert.match(configError([], { TLS_CERT: 'cert.pem' }).message, /TLS_CERT and TLS_KEY/)
  assert.match(configError(['--tls-key', 'key.pem'], {}).message, /TLS_CERT and TLS_KEY/)
})

test('splits comma-separated token lists', () => {
  const config = parseConfig([], {
    INGEST_TOKENS: ` ${INGEST_TOKEN}a , ${INGEST_TOKEN}b,`,
    READ_TOKENS: READ_TOKEN,
  })

  assert.deepEqual(config.ingestTokens, [`${INGEST_TOKEN}a`, `${INGEST_TOKEN}b`])
  assert.deepEqual(config.readTokens, [READ_TOKEN])
})

test('rejects a token in both scopes', () => {
  const error = configError([], {
    INGEST_TOKENS: INGEST_TOKEN,
    READ_TOKENS: `${READ_TOKEN},${INGEST_TOKEN}`,
  })

  assert.match(error.message, /both INGEST_TOKENS and READ_TOKENS/)
  assert.ok(!error.message.includes(INGEST_TOKEN), error.message)
})

test('rejects only one token scope', () => {
  assert.match(
    configError([], { INGEST_TOKENS: INGEST_TOKEN }).message,
    /INGEST_TOKENS and READ_TOKENS must be set together/,
  )
  assert.match(
    configError([], { READ_TOKENS: READ_TOKEN }).message,
    /INGEST_TOKENS and READ_TOKENS must be set together/,
  )
})

test('warns about a short token without showing it', () => {
  const shortToken = 'Short7Token'

  const config = parseConfig([], { INGEST_TOKENS: INGEST_TOKEN, READ_TOKENS: shortToken })

  assert.deepEqual(config.readTokens, [shortToken])
  assert.equal(config.warnings.length, 1)
  assert.match(config.warnings[0] as string, /READ_TOKENS token 1 is 11 characters long/)
  assert.ok(!config.warnings[0]?.includes(shortToken), config.warnings[0])
})

test('rejects a malformed token without echoing it', () => {
  const malformed = 'Secret%Token with space'

  const error = configError([], {
    INGEST_TOKENS: `${INGEST_TOKEN},${malformed}`,
    READ_TOKENS: READ_TOKEN,
  })

  assert.match(error.message, /invalid INGEST_TOKENS: token 2/)
  assert.ok(!error.message.includes('Secret'), error.message)
  assert.ok(!error.message.includes(INGEST_TOKEN), error.message)
})

test('rejects an unknown flag', () => {
  const error = configError(['--colour', 'red'], {})

  assert.match(error.message, /--colour/)
  assert.match(error.message, /--help/)
})

test('rejects a positional argument', () => {
  assert.ok(configError(['extra'], {}) instanceof ConfigError)
})

test('help text lists every flag and variable', () => {
  const text = helpText()
  for (const [name, option] of Object.entries(OPTIONS)) {
    assert.ok(text.includes(`--${name}`), name)
    assert.ok(text.includes(option.env), option.env)
  }
})

test('puts the token file beside the database', () => {
  const config = parseConfig(['--db-path', join('/srv', 'metrics', 'm.db')], {})

  assert.equal(config.tokenFilePath, join('/srv', 'metrics', 'tokens.env'))
})
