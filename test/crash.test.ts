import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runCrashTest } from '../scripts/harness/crash.js'
import { tempDir } from './helpers.js'

// The short version of `npm run crash-test`, which runs 20 rounds.
test('SIGKILL under load loses no acknowledged login', async (t) => {
  const results = await runCrashTest({
    dir: tempDir(t),
    rounds: 3,
    clients: 8,
    minKillMs: 200,
    maxKillMs: 1200,
  })

  assert.equal(results.length, 3)
  for (const result of results) {
    assert.ok(result.acknowledged > 0, `round ${result.round} acknowledged logins`)
    assert.deepEqual(result.lost, [], `round ${result.round} lost logins`)
    assert.deepEqual(result.unknown, [], `round ${result.round} stored unknown logins`)
    assert.deepEqual(result.miscounted, [], `round ${result.round} counters`)
    assert.equal(result.integrity, 'ok', `round ${result.round} integrity`)
  }
})
