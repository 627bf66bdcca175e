import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { tempDir } from './helpers.js'
import {
  jsonRequest,
  keepAliveAgent,
  rawHeader,
  rawRequest,
  readGeneratedTokens,
  startServerProcess,
} from './server-process.js'

function rawPost(token: string | undefined, contentType: string, body: string): string {
  const authorization =
    token === undefined ? '' : `Authorization: Bearer${token === '' ? '' : ` ${token}`}\r\n`

  return (
    'POST /metrics HTTP/1.1\r\n' +
    'Host: 127.0.0.1\r\n' +
    authorization +
    `Content-Type: ${contentType}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  )
}

test('passes the five compliance checks of the reference client', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd)
  const { ingest } = readGeneratedTokens(cwd)
  const okBody = JSON.stringify({
    account_id: 'testacct-0000-0000-0000-000000000000',
    user_id: 'testuser-0000-0000-0000-000000000000',
    timestamp: new Date().toISOString(),
  })
  const emptyBody = JSON.stringify({
    account_id: '',
    user_id: '',
    timestamp: '0001-01-01T00:00:00Z',
  })

  const checks: Array<[string, string, number]> = [
    ['OK request', rawPost(ingest, 'application/json', okBody), 201],
    ['empty metric', rawPost(ingest, 'application/json', emptyBody), 400],
    ['corrupted metric', rawPost(ingest, 'application/x-www-form-urlencoded', 'bad=format'), 400],
    ['empty token', rawPost('', 'application/json', okBody), 403],
    ['wrong token', rawPost(randomUUID(), 'application/json', okBody), 403],
  ]

  for (const [name, request, status] of checks) {
    const reply = await rawRequest(server, request)
    assert.equal(reply.status, status, `${name}: ${reply.body}`)
    assert.equal(rawHeader(reply, 'content-type'), 'application/json', `${name}: ${reply.head}`)
  }
})

test('generates dev certificates and tokens on first start', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd)

  for (const file of ['ca-cert.pem', 'server-cert.pem', 'server-key.pem']) {
    assert.ok(existsSync(join(cwd, 'certs', file)), file)
  }
  assert.equal(statSync(join(cwd, 'certs', 'server-key.pem')).mode & 0o777, 0o600)
  assert.equal(statSync(join(cwd, 'data', 'tokens.env')).mode & 0o777, 0o600)
  const tokens = readGeneratedTokens(cwd)
  assert.ok(tokens.ingest.length >= 43)
  assert.ok(tokens.read.length >= 43)
  const logs = server.output.join('\n')
  assert.ok(logs.includes(join(cwd, 'data', 'tokens.env')), 'the start log names the token file')
  assert.equal(logs.includes(tokens.ingest), false)
  assert.equal(logs.includes(tokens.read), false)
})

test('stores the logins of 100 devices and survives a restart', async (t) => {
  const cwd = tempDir(t)
  const accountId = randomUUID()
  const users = Array.from({ length: 100 }, () => randomUUID())
  const rounds = 3
  let server = await startServerProcess(t, cwd, {
    INGEST_TOKENS: 'a'.repeat(40),
    READ_TOKENS: 'b'.repeat(40),
  })
  let agent = keepAliveAgent(t, server)

  // Each device logs in `rounds` times, one tick apart, as the reference client's `run` does.
  const base = BigInt(Date.now()) * 1_000_000n
  const sends: Promise<number>[] = []
  for (let round = 0; round < rounds; round++) {
    for (const [index, userId] of users.entries()) {
      const nanos = base + BigInt(round * 1000 + index) * 1_000_123n
      const timestamp = `${new Date(Number(nanos / 1_000_000n)).toISOString().slice(0, 19)}.${String(nanos % 1_000_000_000n).padStart(9, '0')}Z`
      sends.push(
        jsonRequest(server, agent, 'POST', '/metrics', 'a'.repeat(40), {
          account_id: accountId,
          user_id: userId,
          timestamp,
        }).then((reply) => reply.status),
      )
    }
  }
  const statuses = await Promise.all(sends)
  assert.deepEqual(new Set(statuses), new Set([201]))

  const summary = await jsonRequest(server, agent, 'GET', `/accounts/${accountId}`, 'b'.repeat(40))
  assert.equal(summary.status, 200)
  assert.equal(summary.contentType, 'application/json')
  assert.equal(summary.body.devices, 100)
  assert.equal(summary.body.logins, 300)

  assert.equal(await server.stop('SIGTERM'), 0)
  server = await startServerProcess(t, cwd, {
    INGEST_TOKENS: 'a'.repeat(40),
    READ_TOKENS: 'b'.repeat(40),
  })
  agent = keepAliveAgent(t, server)

  const after = await jsonRequest(server, agent, 'GET', `/accounts/${accountId}`, 'b'.repeat(40))
  assert.deepEqual(after.body, summary.body)
  const listed = await jsonRequest(
    server,
    agent,
    'GET',
    `/accounts/${accountId}/users?limit=1000`,
    'b'.repeat(40),
  )
  assert.deepEqual(
    listed.body.users.map((user: { user_id: string }) => user.user_id).sort(),
    [...users].sort(),
  )
  for (const user of listed.body.users) {
    assert.equal(user.logins, rounds)
  }
  const replay = await jsonRequest(server, agent, 'POST', '/metrics', 'a'.repeat(40), {
    account_id: accountId,
    user_id: users[0],
    timestamp: summary.body.first_login,
  })
  assert.equal(replay.status, 200)
})

test('enforces token scopes both ways over TLS', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd)
  const tokens = readGeneratedTokens(cwd)
  const agent = keepAliveAgent(t, server)
  const login = { account_id: 'acct', user_id: 'user', timestamp: '2024-05-01T00:00:00Z' }

  const readWrites = await jsonRequest(server, agent, 'POST', '/metrics', tokens.read, login)
  const ingestReads = await jsonRequest(server, agent, 'GET', '/accounts', tokens.ingest)
  const ingestWrites = await jsonRequest(server, agent, 'POST', '/metrics', tokens.ingest, login)
  const readReads = await jsonRequest(server, agent, 'GET', '/accounts', tokens.read)

  assert.equal(readWrites.status, 403)
  assert.equal(ingestReads.status, 403)
  assert.equal(ingestWrites.status, 201)
  assert.equal(readReads.status, 200)
  assert.equal(readReads.body.accounts.length, 1)
})

test('SIGTERM under load stores every acknowledged login and exits 0', async (t) => {
  const cwd = tempDir(t)
  const env = { INGEST_TOKENS: 'i'.repeat(40), READ_TOKENS: 'r'.repeat(40) }
  let server = await startServerProcess(t, cwd, env)
  const agent = keepAliveAgent(t, server, 16)

  const acknowledged: string[] = []
  // Logins rejected with 503, or whose connection the stopping server closed before the reply.
  const refused: string[] = []
  const errors = new Map<string, string>()
  const sends: Promise<void>[] = []
  for (let i = 0; i < 400; i++) {
    const userId = `device-${i}`
    sends.push(
      jsonRequest(server, agent, 'POST', '/metrics', env.INGEST_TOKENS, {
        account_id: 'load',
        user_id: userId,
        timestamp: '2024-06-01T00:00:00Z',
      }).then(
        (reply) => {
          if (reply.status === 201) {
            acknowledged.push(userId)
          } else {
            assert.equal(reply.status, 503)
            refused.push(userId)
          }
        },
        (error: Error) => {
          refused.push(userId)
          errors.set(userId, error.message)
        },
      ),
    )
  }
  // Stop in the middle of the load, once some logins were acknowledged.
  while (acknowledged.length < 50) {
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  const stopping = Date.now()
  const exitCode = await server.stop('SIGTERM')
  const stopMs = Date.now() - stopping
  await Promise.all(sends)
  assert.equal(exitCode, 0)
  assert.ok(stopMs < 10_000, `drained and exited in ${stopMs} ms`)
  assert.equal(acknowledged.length + refused.length, 400)

  server = await startServerProcess(t, cwd, env)
  const reader = keepAliveAgent(t, server)
  const listed = await jsonRequest(
    server,
    reader,
    'GET',
    '/accounts/load/users?limit=1000',
    env.READ_TOKENS,
  )
  const stored = new Set(
    (listed.body?.users ?? []).map((user: { user_id: string }) => user.user_id),
  )
  for (const userId of acknowledged) {
    assert.ok(stored.has(userId), `acknowledged ${userId} is stored`)
  }
  for (const userId of refused) {
    assert.equal(
      stored.has(userId),
      false,
      `refused ${userId} is not stored: ${errors.get(userId)}`,
    )
  }
})
