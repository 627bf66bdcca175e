import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import type { AppError } from '../src/errors.js'
import type { Login, LoginOutcome } from '../src/login.js'
import { buildReliabilityApp, hasLoginOf, postLogin } from './reliability-fixture.js'

function login(userId: string) {
  return { account_id: 'overload', user_id: userId, timestamp: '2024-06-01T00:00:00Z' }
}

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Makes every commit take at least `ms` milliseconds, like a slow disk. */
function slowBy(ms: number) {
  return (commit: (logins: readonly Login[]) => LoginOutcome[]) => (logins: readonly Login[]) => {
    const until = performance.now() + ms
    while (performance.now() < until) {
      // Spin: the commit is synchronous, as better-sqlite3's is.
    }
    return commit(logins)
  }
}

test('full queue replies 503 with Retry-After and stores nothing', async (t) => {
  // A one-second batch delay keeps the queued logins waiting while the rest arrive.
  const { app, store, queue, ingestToken } = await buildReliabilityApp(t, {
    maxQueued: 5,
    batchDelayMs: 1000,
    saturationHoldMs: 60_000,
  })

  const replies = Promise.all(
    Array.from({ length: 12 }, (_, i) => app.inject(postLogin(ingestToken, login(`u${i}`)))),
  )
  await waitFor(() => queue.stats().queued === 5)
  const duringOverload = await app.inject({ method: 'GET', url: '/readyz' })
  const results = await replies

  const refused = results.filter((reply) => reply.statusCode === 503)
  const stored = results.filter((reply) => reply.statusCode === 201)
  assert.equal(stored.length, 5)
  assert.equal(refused.length, 7)
  for (const reply of refused) {
    assert.equal(reply.headers['content-type'], 'application/json')
    assert.equal(reply.json().code, 'IOTM_ERR_QUEUE_FULL')
    assert.match(String(reply.headers['retry-after']), /^[1-9]\d*$/)
    assert.equal(hasLoginOf(store, 'overload', reply.json().user_id ?? 'none'), false)
  }
  for (const [i, reply] of results.entries()) {
    assert.equal(hasLoginOf(store, 'overload', `u${i}`), reply.statusCode === 201, `u${i}`)
  }
  assert.equal(duringOverload.statusCode, 503)
  assert.equal(duringOverload.json().reasons[0].code, 'IOTM_ERR_QUEUE_FULL')
  assert.equal(duringOverload.json().queued, 5)
  assert.equal(queue.stats().queued, 0)
})

test('readyz turns ready again once the queue drains', async (t) => {
  const { app, queue, ingestToken } = await buildReliabilityApp(t, {
    maxQueued: 2,
    batchDelayMs: 300,
    saturationHoldMs: 100,
  })

  const replies = Promise.all(
    Array.from({ length: 4 }, (_, i) => app.inject(postLogin(ingestToken, login(`r${i}`)))),
  )
  await waitFor(() => queue.stats().queued === 2)
  const saturated = await app.inject({ method: 'GET', url: '/readyz' })
  await replies
  await new Promise((resolve) => setTimeout(resolve, 150))
  const drained = await app.inject({ method: 'GET', url: '/readyz' })

  assert.equal(saturated.statusCode, 503)
  assert.equal(saturated.headers['content-type'], 'application/json')
  assert.equal(drained.statusCode, 200)
  assert.deepEqual(drained.json(), { status: 'ready', reasons: [], queued: 0, max_queued: 2 })
})

async function retryAfterOfFullQueue(t: TestContext, commitMs: number): Promise<number> {
  const maxQueued = 400
  const { queue } = await buildReliabilityApp(t, {
    maxQueued,
    maxBatchSize: maxQueued,
    wrapCommit: slowBy(commitMs),
  })
  const timestampNs = 1_700_000_000_000_000_000n

  // Single-login batches let the queue measure the commit speed.
  for (let i = 0; i < 15; i++) {
    await queue.enqueue({ accountId: 'rate', userId: `warm-${i}`, timestampNs })
  }
  const pending = Array.from({ length: maxQueued }, (_, i) =>
    queue.enqueue({ accountId: 'rate', userId: `fill-${i}`, timestampNs }),
  )
  let retryAfter = Number.NaN
  try {
    await queue.enqueue({ accountId: 'rate', userId: 'one-too-many', timestampNs })
  } catch (error) {
    retryAfter = (error as AppError).retryAfterSeconds ?? Number.NaN
  }
  await Promise.all(pending)

  return retryAfter
}

test('Retry-After follows the measured drain rate', async (t) => {
  const fast = await retryAfterOfFullQueue(t, 0)
  const slow = await retryAfterOfFullQueue(t, 40)

  // 15 commits of 40 ms move the rate estimate from 1000/s to about 60/s,
  // so 400 queued logins need about 7 s.
  assert.ok(slow > fast, `slow queue ${slow} s, fast queue ${fast} s`)
  assert.ok(slow >= 4, `slow queue Retry-After ${slow}`)
  assert.ok(slow <= 10, `slow queue Retry-After ${slow}`)
})

test('readyz is not ready while shutting down', async (t) => {
  const { app, readiness } = await buildReliabilityApp(t)

  const before = await app.inject({ method: 'GET', url: '/readyz' })
  readiness.markShuttingDown()
  const after = await app.inject({ method: 'GET', url: '/readyz' })

  assert.equal(before.statusCode, 200)
  assert.equal(after.statusCode, 503)
  assert.equal(after.json().reasons[0].code, 'IOTM_ERR_QUEUE_CLOSED')
})
