import assert from 'node:assert/strict'
import { once } from 'node:events'
import { join } from 'node:path'
import { test } from 'node:test'
import { holdWriteLock, tempDir } from './helpers.js'
import {
  jsonRequest,
  keepAliveAgent,
  startServerProcess,
  waitForLogLines,
} from './server-process.js'

const env = { INGEST_TOKENS: 'i'.repeat(40), READ_TOKENS: 'r'.repeat(40) }

// Ctrl-C under `npm start` delivers SIGINT twice: from the terminal to the
// whole process group, and forwarded by npm. The second one must not kill
// the server while it drains the write queue.
test('second SIGINT during the drain is ignored', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd, env)
  const agent = keepAliveAgent(t, server)
  // The held lock keeps the login in the queue, so the drain lasts until release.
  const lock = await holdWriteLock(t, join(cwd, 'data', 'metrics.db'))
  const posted = jsonRequest(server, agent, 'POST', '/metrics', env.INGEST_TOKENS, {
    account_id: 'signals',
    user_id: 'device-1',
    timestamp: '2024-06-01T00:00:00Z',
  })
  await new Promise((resolve) => setTimeout(resolve, 100))

  const exit = once(server.child, 'exit')
  server.child.kill('SIGINT')
  await waitForLogLines(server, (line) => line.includes('shutting down: draining'), 1)
  server.child.kill('SIGINT')
  await waitForLogLines(server, (line) => line.includes('already shutting down'), 1)
  await lock.release()
  const reply = await posted
  const [code, signal] = await exit

  assert.equal(reply.status, 201)
  assert.equal(signal, null, 'the second SIGINT did not kill the process')
  assert.equal(code, 0)
  assert.equal(server.output.filter((line) => line.includes('"msg":"server stopped"')).length, 1)
})
