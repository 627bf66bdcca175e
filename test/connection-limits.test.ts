import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConfigError, parseConfig } from '../src/config.js'

test('connection limits have defaults', () => {
  const config = parseConfig([], {})

  assert.deepEqual(config.connectionLimits, {
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    keepAliveTimeoutMs: 72_000,
    maxConnections: 10_000,
  })
  assert.equal(config.busyTimeoutMs, 5000)
})

test('connection limits come from flags and environment', () => {
  const config = parseConfig(['--max-connections', '50', '--busy-timeout-ms', '250'], {
    HEADERS_TIMEOUT_MS: '2000',
    REQUEST_TIMEOUT_MS: '4000',
    KEEP_ALIVE_TIMEOUT_MS: '1000',
  })

  assert.equal(config.connectionLimits.headersTimeoutMs, 2000)
  assert.equal(config.connectionLimits.requestTimeoutMs, 4000)
  assert.equal(config.connectionLimits.keepAliveTimeoutMs, 1000)
  assert.equal(config.connectionLimits.maxConnections, 50)
  assert.equal(config.busyTimeoutMs, 250)
})

test('header timeout above request timeout is rejected', () => {
  assert.throws(
    () => parseConfig([], { HEADERS_TIMEOUT_MS: '40000' }),
    (error: unknown) =>
      error instanceof ConfigError && /HEADERS_TIMEOUT_MS \(40000\)/.test(error.message),
  )
})

test('zero max connections is rejected', () => {
  assert.throws(() => parseConfig(['--max-connections', '0'], {}), ConfigError)
})
