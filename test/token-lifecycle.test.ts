import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { generateManagedToken } from '../src/token-format.js'
import { tempDir } from './helpers.js'
import { jsonRequest, keepAliveAgent, startServerProcess } from './server-process.js'

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))
const ACCOUNT = '781df840-09da-42f4-ba29-996d2ff76a73'
const OTHER_ACCOUNT = 'testacct-0000-0000-0000-000000000000'

interface CliRun {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs `iot-metrics tokens ...` in `cwd`, the way an operator would from a shell. */
function tokensCommand(cwd: string, args: string[]): CliRun {
  const result = spawnSync(process.execPath, [CLI, 'tokens', ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '' },
    encoding: 'utf8',
    timeout: 10_000,
  })

  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

function login(accountId: string, second: number) {
  return {
    account_id: accountId,
    user_id: 'bf506b23-8c4e-4c8e-af95-e331dba766ab',
    timestamp: `2019-03-03T18:02:${String(second).padStart(2, '0')}Z`,
  }
}

test('token lifecycle leaks no token to logs', async (t) => {
  const cwd = tempDir(t)
  const envIngest = `env-ingest-${randomBytes(24).toString('base64url')}`
  const envRead = `env-read-${randomBytes(24).toString('base64url')}`
  const server = await startServerProcess(t, cwd, {
    INGEST_TOKENS: envIngest,
    READ_TOKENS: envRead,
    LOG_LEVEL: 'trace',
  })
  const agent = keepAliveAgent(t, server)
  const logs: string[] = []

  // Create two managed tokens while the server runs; the database is the
  // server's default one, found from the same working folder.
  const bound = tokensCommand(cwd, [
    'create',
    '--scope',
    'ingest',
    '--account',
    ACCOUNT,
    '--name',
    'gate 1',
  ])
  const reader = tokensCommand(cwd, ['create', '--scope', 'read', '--name', 'dashboard'])
  const createdAt = Date.now()
  logs.push(bound.stderr, reader.stderr)
  assert.equal(bound.status, 0, bound.stderr)
  assert.equal(reader.status, 0, reader.stderr)
  const boundToken = bound.stdout.trim()
  const readToken = reader.stdout.trim()
  assert.match(boundToken, /^iotm_ingest_[0-9A-Za-z]{49}$/)
  assert.match(readToken, /^iotm_read_[0-9A-Za-z]{49}$/)

  // The server picks the new tokens up within a second.
  const accepted = async () =>
    (await jsonRequest(server, agent, 'GET', '/accounts', readToken)).status === 200
  while (!(await accepted()) && Date.now() - createdAt < 2000) {
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  assert.ok(Date.now() - createdAt < 1000, `new tokens took ${Date.now() - createdAt} ms`)
  const first = await jsonRequest(server, agent, 'POST', '/metrics', boundToken, login(ACCOUNT, 0))
  assert.equal(first.status, 201, JSON.stringify(first.body))

  // Binding, scopes and the configured tokens.
  const mismatch = await jsonRequest(
    server,
    agent,
    'POST',
    '/metrics',
    boundToken,
    login(OTHER_ACCOUNT, 1),
  )
  assert.equal(mismatch.status, 403)
  assert.equal(mismatch.body.code, 'IOTM_ERR_AUTH_ACCOUNT_MISMATCH')
  const unbound = await jsonRequest(
    server,
    agent,
    'POST',
    '/metrics',
    envIngest,
    login(OTHER_ACCOUNT, 2),
  )
  assert.equal(unbound.status, 201)
  const read = await jsonRequest(server, agent, 'GET', `/accounts/${OTHER_ACCOUNT}`, readToken)
  assert.equal(read.status, 200)
  assert.equal(read.body.logins, 1, 'the mismatched login was not stored')
  assert.equal((await jsonRequest(server, agent, 'GET', '/accounts', envRead)).status, 200)

  // Rejected tokens: unknown, mistyped, wrong scope.
  const unknown = generateManagedToken('read')
  const malformed = `iotm_read_${randomBytes(24).toString('hex')}`
  const typo = `${readToken.slice(0, -1)}${readToken.endsWith('A') ? 'B' : 'A'}`
  const rejected = [
    await jsonRequest(server, agent, 'GET', '/accounts', unknown),
    await jsonRequest(server, agent, 'GET', '/accounts', malformed),
    await jsonRequest(server, agent, 'GET', '/accounts', typo),
    await jsonRequest(server, agent, 'GET', '/accounts', boundToken),
    await jsonRequest(server, agent, 'POST', '/metrics', readToken, login(ACCOUNT, 3)),
  ]
  assert.deepEqual(
    rejected.map((reply) => reply.status),
    [403, 403, 403, 403, 403],
  )

  // List while running, then revoke: rejected within a second.
  const listed = tokensCommand(cwd, ['list'])
  logs.push(listed.stdout, listed.stderr)
  assert.equal(listed.status, 0, listed.stderr)
  assert.match(listed.stdout, /gate 1 +ingest +781df840-09da-42f4-ba29-996d2ff76a73/)
  assert.match(listed.stdout, /dashboard +read +-/)

  const revoke = tokensCommand(cwd, ['revoke', '1'])
  const revokedAt = Date.now()
  logs.push(revoke.stdout, revoke.stderr)
  assert.equal(revoke.status, 0, revoke.stderr)
  let afterRevoke = await jsonRequest(
    server,
    agent,
    'POST',
    '/metrics',
    boundToken,
    login(ACCOUNT, 4),
  )
  while (afterRevoke.status !== 403 && Date.now() - revokedAt < 2000) {
    await new Promise((resolve) => setTimeout(resolve, 25))
    afterRevoke = await jsonRequest(
      server,
      agent,
      'POST',
      '/metrics',
      boundToken,
      login(ACCOUNT, 5),
    )
  }
  assert.equal(afterRevoke.status, 403)
  assert.ok(Date.now() - revokedAt < 1000, `revocation took ${Date.now() - revokedAt} ms`)

  // Stopping flushes the last-use times, which list shows afterwards.
  assert.equal(await server.stop(), 0)
  const final = tokensCommand(cwd, ['list', '--all', '--json'])
  logs.push(final.stdout, final.stderr)
  const tokens = JSON.parse(final.stdout)
  assert.notEqual(tokens[0].revoked_at, null)
  assert.notEqual(tokens[0].last_used_at, null)
  assert.notEqual(tokens[1].last_used_at, null)
  assert.equal(tokens[1].revoked_at, null)

  // Failed checks are logged with the client address and a reason.
  const failures = server.output
    .filter((line) => line.includes('"msg":"token check failed"'))
    .map((line) => JSON.parse(line))
  assert.ok(failures.length >= 6, `${failures.length} failures logged`)
  assert.ok(failures.every((entry) => entry.ip === '127.0.0.1'))
  assert.ok(failures.some((entry) => entry.reason === 'checksum'))

  // No token, in whole or in part, and no Authorization header in any log.
  const everything = [...server.output, ...logs].join('\n')
  for (const token of [envIngest, envRead, boundToken, readToken, unknown, malformed, typo]) {
    assert.equal(
      everything.includes(token),
      false,
      `a token appears in the logs: ${token.slice(0, 12)}`,
    )
    assert.equal(
      everything.includes(token.slice(-24)),
      false,
      'part of a token appears in the logs',
    )
  }
  assert.doesNotMatch(everything, /authorization/i)
  assert.doesNotMatch(everything, /bearer\s+[A-Za-z0-9._~+/-]{16,}/i)
})
