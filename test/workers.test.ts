import assert from 'node:assert/strict'
import { test } from 'node:test'
import { tempDir } from './helpers.js'
import { jsonRequest, keepAliveAgent, startServerProcess } from './server-process.js'

const env = { INGEST_TOKENS: 'i'.repeat(40), READ_TOKENS: 'r'.repeat(40), WORKERS: '2' }

test('two workers store every login and stop cleanly', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd, env)
  // Separate connections, so that both workers receive logins.
  const agent = keepAliveAgent(t, server, 32)

  const statuses = await Promise.all(
    Array.from({ length: 300 }, (_, index) =>
      jsonRequest(server, agent, 'POST', '/metrics', env.INGEST_TOKENS, {
        account_id: 'workers',
        user_id: `device-${index % 30}`,
        timestamp: `2024-06-01T00:00:${String(Math.floor(index / 30)).padStart(2, '0')}Z`,
      }).then((reply) => reply.status),
    ),
  )
  const summary = await jsonRequest(server, agent, 'GET', '/accounts/workers', env.READ_TOKENS)
  agent.destroy()
  const exitCode = await server.stop('SIGTERM')

  assert.deepEqual(new Set(statuses), new Set([201]))
  assert.equal(summary.body.logins, 300)
  assert.equal(summary.body.devices, 30)
  assert.equal(exitCode, 0)
  const listening = server.output.filter((line) => line.includes('"msg":"server listening"'))
  assert.equal(listening.length, 2)
})
