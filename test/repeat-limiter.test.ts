import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createRepeatLimiter } from '../src/repeat-limiter.js'

test('repeat limiter lets one per interval through', () => {
  let now = 1_000
  const limiter = createRepeatLimiter(1000, () => now)

  assert.equal(limiter.admit('IOTM_ERR_QUEUE_FULL'), 0, 'the first occurrence goes out')
  assert.equal(limiter.admit('IOTM_ERR_QUEUE_FULL'), undefined)
  now += 999
  assert.equal(limiter.admit('IOTM_ERR_QUEUE_FULL'), undefined)
  now += 1
  assert.equal(limiter.admit('IOTM_ERR_QUEUE_FULL'), 2, 'it carries the count held back')
  assert.equal(limiter.admit('IOTM_ERR_QUEUE_FULL'), undefined)
})

test('repeat limiter keeps keys apart', () => {
  const now = 5_000
  const limiter = createRepeatLimiter(1000, () => now)

  assert.equal(limiter.admit('IOTM_ERR_QUEUE_FULL'), 0)
  assert.equal(limiter.admit('IOTM_ERR_QUEUE_CLOSED'), 0)
  assert.equal(limiter.admit('IOTM_ERR_QUEUE_FULL'), undefined)
})
