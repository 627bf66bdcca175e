import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { test } from 'node:test'
import type Database from 'better-sqlite3'
import { runTokensCommand } from '../src/commands/tokens.js'
import { parseConfig } from '../src/config.js'
import { openDatabase } from '../src/sqlite-store.js'
import { checkManagedToken, crc32, generateManagedToken, hashToken } from '../src/token-format.js'
import { createTokenStore, type TokenStore } from '../src/token-store.js'
import { loadOrCreateTokenFile } from '../src/tokens.js'
import { tempDir } from './helpers.js'
import { buildSecurityTestApp, getWithToken, postLogin } from './security-app.js'

const ACCOUNT = '781df840-09da-42f4-ba29-996d2ff76a73'
const OTHER_ACCOUNT = 'testacct-0000-0000-0000-000000000000'

function login(accountId: string) {
  return { account_id: accountId, user_id: randomUUID(), timestamp: new Date().toISOString() }
}

/** Opens a token store on its own connection, the way `iot-metrics tokens` does. */
function openTokenStore(
  t: TestContext,
  dbPath?: string,
): { db: Database.Database; store: TokenStore } {
  const db = openDatabase({ path: dbPath ?? join(tempDir(t), 'metrics.db') })
  t.after(() => db.close())

  return { db, store: createTokenStore(db) }
}

function otherConnection(t: TestContext, dbPath: string): TokenStore {
  return openTokenStore(t, dbPath).store
}

test('crc32 matches the standard check value', () => {
  assert.equal(crc32('123456789'), 0xcbf43926)
})

test('managed token has prefix, 256-bit secret and checksum', () => {
  const ingest = generateManagedToken('ingest')
  const read = generateManagedToken('read')

  assert.match(ingest, /^iotm_ingest_[0-9A-Za-z]{49}$/)
  assert.match(read, /^iotm_read_[0-9A-Za-z]{49}$/)
  assert.deepEqual(checkManagedToken(ingest), { kind: 'managed', scope: 'ingest' })
  assert.deepEqual(checkManagedToken(read), { kind: 'managed', scope: 'read' })
  assert.notEqual(generateManagedToken('ingest'), ingest)
})

test('managed token with one changed character fails its checksum', () => {
  const token = generateManagedToken('ingest')
  const position = 20
  const changed = token[position] === 'a' ? 'b' : 'a'
  const typo = token.slice(0, position) + changed + token.slice(position + 1)

  assert.deepEqual(checkManagedToken(typo), { kind: 'invalid', reason: 'checksum' })
  assert.deepEqual(checkManagedToken(token.slice(0, -1)), { kind: 'invalid', reason: 'malformed' })
  assert.deepEqual(checkManagedToken('some-env-token'), { kind: 'unmanaged' })
})

test('token store keeps only the SHA-256 of a token', (t) => {
  const { db, store } = openTokenStore(t)

  const { token, info } = store.create({ scope: 'ingest', accountId: ACCOUNT, name: 'gate 1' })

  const row = db.prepare('SELECT * FROM api_tokens WHERE id = ?').get(info.id) as Record<
    string,
    unknown
  >
  assert.deepEqual(row.token_hash, hashToken(token))
  assert.equal(JSON.stringify(row).includes(token.slice(12, 40)), false)
  assert.equal(info.scope, 'ingest')
  assert.equal(info.accountId, ACCOUNT)
  assert.equal(info.name, 'gate 1')
})

test('token store revokes once and reports unknown ids', (t) => {
  const { store } = openTokenStore(t)
  const { info } = store.create({ scope: 'read' })
  const before = store.generation()

  assert.equal(store.revoke(info.id), 'revoked')
  assert.equal(store.revoke(info.id), 'already-revoked')
  assert.equal(store.revoke(999), 'not-found')
  assert.equal(store.list().length, 0)
  assert.equal(store.list({ includeRevoked: true }).length, 1)
  assert.ok(store.generation() > before)
})

test('last-use updates leave the generation unchanged', (t) => {
  const { store } = openTokenStore(t)
  const { info } = store.create({ scope: 'read' })
  const before = store.generation()

  store.recordLastUse(new Map([[info.id, 2000]]))
  store.recordLastUse(new Map([[info.id, 1000]]))

  assert.equal(store.generation(), before)
  assert.equal(store.list()[0]?.lastUsedAt?.getTime(), 2000)
})

test('managed ingest token stores a login', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  const { token } = otherConnection(t, fixture.dbPath).create({ scope: 'ingest' })
  fixture.managed.refresh()

  const reply = await postLogin(fixture.app, token, login(ACCOUNT))

  assert.equal(reply.statusCode, 201, reply.body)
})

test('managed read token cannot send logins', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  const { token } = otherConnection(t, fixture.dbPath).create({ scope: 'read' })
  fixture.managed.refresh()

  const post = await postLogin(fixture.app, token, login(ACCOUNT))
  const get = await getWithToken(fixture.app, '/accounts', token)

  assert.equal(post.statusCode, 403)
  assert.equal(post.json().code, 'IOTM_ERR_AUTH_WRONG_SCOPE')
  assert.equal(get.statusCode, 200)
})

test('bound token rejects a login for another account', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  const { token } = otherConnection(t, fixture.dbPath).create({
    scope: 'ingest',
    accountId: ACCOUNT,
  })
  fixture.managed.refresh()

  const own = await postLogin(fixture.app, token, login(ACCOUNT.toUpperCase()))
  const other = await postLogin(fixture.app, token, login(OTHER_ACCOUNT))

  assert.equal(own.statusCode, 201, own.body)
  assert.equal(other.statusCode, 403)
  assert.equal(other.headers['content-type'], 'application/json')
  assert.equal(other.json().code, 'IOTM_ERR_AUTH_ACCOUNT_MISMATCH')
  assert.equal(other.json().field, 'account_id')
  assert.equal(fixture.store.getAccount(OTHER_ACCOUNT), undefined)
  assert.equal(fixture.store.getAccount(ACCOUNT)?.logins, 1)
})

test('configured tokens stay unbound', async (t) => {
  const fixture = await buildSecurityTestApp(t)

  const reply = await postLogin(fixture.app, fixture.ingestToken, login(OTHER_ACCOUNT))

  assert.equal(reply.statusCode, 201, reply.body)
})

test('mistyped managed token is rejected before lookup', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  const { token } = otherConnection(t, fixture.dbPath).create({ scope: 'ingest' })
  fixture.managed.refresh()
  const typo = `${token.slice(0, 30)}${token[30] === 'x' ? 'y' : 'x'}${token.slice(31)}`
  let lookups = 0
  const lookup = fixture.managed.lookup
  fixture.managed.lookup = (hash) => {
    lookups += 1
    return lookup(hash)
  }

  const reply = await postLogin(fixture.app, typo, login(ACCOUNT))

  assert.equal(reply.statusCode, 403)
  assert.match(reply.json().message, /checksum/)
  assert.equal(lookups, 0)
})

test('revoked token is rejected after the next poll', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  const cli = otherConnection(t, fixture.dbPath)
  const { token, info } = cli.create({ scope: 'read' })
  fixture.managed.refresh()
  const request = () => getWithToken(fixture.app, '/accounts', token)
  assert.equal((await request()).statusCode, 200)

  cli.revoke(info.id)
  const revokedAt = Date.now()
  let status = 200
  while (status === 200 && Date.now() - revokedAt < 2000) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    status = (await request()).statusCode
  }

  assert.equal(status, 403)
  assert.ok(Date.now() - revokedAt < 1000, `took ${Date.now() - revokedAt} ms`)
})

test('last use is written in batches', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  const cli = otherConnection(t, fixture.dbPath)
  const { token } = cli.create({ scope: 'read' })
  fixture.managed.refresh()
  let updates = 0
  fixture.db.function('count_update', () => {
    updates += 1
    return null
  })
  fixture.db.exec(`CREATE TEMP TRIGGER count_last_use AFTER UPDATE OF last_used_at ON api_tokens
    BEGIN SELECT count_update(); END`)

  for (let i = 0; i < 20; i++) {
    await getWithToken(fixture.app, '/accounts', token)
  }
  assert.equal(updates, 0)
  assert.equal(cli.list()[0]?.lastUsedAt, null)

  fixture.managed.flush()

  assert.equal(updates, 1)
  assert.ok(cli.list()[0]?.lastUsedAt instanceof Date)
})

test('failed token checks are counted and logged without the token', async (t) => {
  const fixture = await buildSecurityTestApp(t)
  const wrong = `${fixture.ingestToken.slice(0, -2)}zz`
  const before = fixture.app.failedTokenChecks()

  await fixture.app.inject({
    method: 'POST',
    url: '/metrics',
    headers: { authorization: `Bearer ${wrong}` },
    payload: login(ACCOUNT),
    remoteAddress: '192.0.2.7',
  })
  await fixture.app.inject({ method: 'GET', url: '/accounts', remoteAddress: '192.0.2.8' })

  assert.equal(fixture.app.failedTokenChecks() - before, 2)
  const failures = fixture.logLines
    .map((line) => JSON.parse(line))
    .filter((entry) => entry.msg === 'token check failed')
  assert.deepEqual(
    failures.map((entry) => [entry.ip, entry.reason]),
    [
      ['192.0.2.7', 'unknown'],
      ['192.0.2.8', 'missing'],
    ],
  )
  assert.equal(fixture.logLines.join('\n').includes(wrong), false)
})

function runCommand(argv: string[], dbPath: string) {
  const output = { stdout: '', stderr: '' }
  const code = runTokensCommand(
    argv,
    { DB_PATH: dbPath },
    {
      stdout: (text) => {
        output.stdout += text
      },
      stderr: (text) => {
        output.stderr += text
      },
    },
  )

  return { code, ...output }
}

test('tokens command rejects bad arguments with exit 2', (t) => {
  const dbPath = join(tempDir(t), 'metrics.db')
  const cases: Array<[string[], RegExp]> = [
    [['create'], /--scope is required/],
    [['create', '--scope', 'admin'], /invalid --scope "admin"/],
    [['create', '--scope', 'read', '--account', ACCOUNT], /binds ingest tokens only/],
    [['create', '--scope', 'ingest', '--account', 'has space'], /invalid --account/],
    [['create', '--scope', 'ingest', '--name', 'a\nb'], /invalid --name/],
    [['revoke', 'abc'], /invalid token id "abc"/],
    [['rotate'], /unknown tokens subcommand "rotate"/],
    [['list', '--colour'], /Unknown option '--colour'/],
  ]

  for (const [argv, message] of cases) {
    const result = runCommand(argv, dbPath)
    assert.equal(result.code, 2, argv.join(' '))
    assert.match(result.stderr, message, argv.join(' '))
    assert.equal(result.stdout, '', argv.join(' '))
  }
})

test('tokens list refuses a missing database', (t) => {
  const dbPath = join(tempDir(t), 'missing', 'metrics.db')

  const result = runCommand(['list'], dbPath)

  assert.equal(result.code, 2)
  assert.match(result.stderr, /no database at/)
  assert.equal(existsSync(dbPath), false)
})

test('tokens create prints only the token on stdout', (t) => {
  const dbPath = join(tempDir(t), 'metrics.db')

  const created = runCommand(['create', '--scope', 'ingest', '--name', 'gate'], dbPath)
  const revoked = runCommand(['revoke', '1'], dbPath)
  const missing = runCommand(['revoke', '2'], dbPath)

  assert.equal(created.code, 0)
  assert.match(created.stdout, /^iotm_ingest_[0-9A-Za-z]{49}\n$/)
  assert.match(created.stderr, /shown only this once/)
  assert.equal(revoked.code, 0)
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /no token with id 2/)
})

test('configured token with a bad checksum stops the start', () => {
  const token = generateManagedToken('ingest')
  const typo = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`

  assert.throws(
    () => parseConfig(['--ingest-tokens', typo, '--read-tokens', generateManagedToken('read')], {}),
    /INGEST_TOKENS: token 1 starts with iotm_ but is not a valid managed token/,
  )
  assert.doesNotThrow(() =>
    parseConfig(['--ingest-tokens', token, '--read-tokens', generateManagedToken('read')], {}),
  )
})

test('generated token file uses the managed format', (t) => {
  const { tokens } = loadOrCreateTokenFile(join(tempDir(t), 'tokens.env'))

  assert.deepEqual(checkManagedToken(tokens.ingest[0] as string), {
    kind: 'managed',
    scope: 'ingest',
  })
  assert.deepEqual(checkManagedToken(tokens.read[0] as string), { kind: 'managed', scope: 'read' })
})
