import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConfigError, parseConfig } from '../src/config.js'

test('batch limits default to 1000 logins and 1 MiB', () => {
  const config = parseConfig([], {})

  assert.equal(config.batchMaxLogins, 1000)
  assert.equal(config.batchMaxBytes, 1024 * 1024)
})

test('batch limits come from flags and environment', () => {
  const config = parseConfig(['--batch-max-logins', '250'], { BATCH_MAX_BYTES: '300000' })

  assert.equal(config.batchMaxLogins, 250)
  assert.equal(config.batchMaxBytes, 300_000)
})

test('rejects a batch login limit above QUEUE_MAX', () => {
  assert.throws(
    () => parseConfig([], { BATCH_MAX_LOGINS: '5000', QUEUE_MAX: '4000' }),
    (error: unknown) =>
      error instanceof ConfigError &&
      /BATCH_MAX_LOGINS \(5000\) is larger than QUEUE_MAX/.test(error.message),
  )
})

test('rejects a batch byte limit under 1024', () => {
  assert.throws(() => parseConfig([], { BATCH_MAX_BYTES: '100' }), ConfigError)
})

test('batch limit follows a smaller queue when unset', () => {
  const config = parseConfig([], { QUEUE_MAX: '500' })

  assert.equal(config.batchMaxLogins, 500)
})
