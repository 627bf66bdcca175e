import assert from 'node:assert/strict'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { runCommand, tempDir } from './helpers.js'
import {
  jsonRequest,
  keepAliveAgent,
  readGeneratedTokens,
  startServerProcess,
} from './server-process.js'

function count(db: Database.Database, sql: string): number {
  return (db.prepare(sql).get() as { n: number }).n
}

test('backup under load is a consistent copy', async (t) => {
  const cwd = tempDir(t)
  const server = await startServerProcess(t, cwd)
  const { ingest } = readGeneratedTokens(cwd)
  const agent = keepAliveAgent(t, server, 8)

  // Eight clients keep sending new logins until the backup has finished.
  let stored = 0
  let sending = true
  const deadline = Date.now() + 30_000
  const client = async (worker: number) => {
    for (let i = 0; sending && Date.now() < deadline; i++) {
      const reply = await jsonRequest(server, agent, 'POST', '/metrics', ingest, {
        account_id: `acct-${worker % 3}`,
        user_id: `device-${i % 40}`,
        timestamp: new Date(Date.UTC(2024, 0, 1) + worker * 1e9 + i * 1000).toISOString(),
      })
      assert.equal(reply.status, 201)
      stored++
    }
  }
  const clients = Array.from({ length: 8 }, (_, worker) => client(worker))
  while (stored < 500) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }

  const storedBefore = stored
  const backup = await runCommand(cwd, ['backup', 'copy.db'])
  const storedAfter = stored
  sending = false
  await Promise.all(clients)

  assert.equal(backup.code, 0, backup.stderr)
  assert.match(backup.stdout, /^backup written to .*copy\.db: .* integrity ok/)
  assert.ok(storedAfter > storedBefore, 'logins were stored while the backup ran')
  const copy = new Database(join(cwd, 'copy.db'), { readonly: true })
  t.after(() => copy.close())
  assert.equal(copy.pragma('integrity_check', { simple: true }), 'ok')
  const logins = count(copy, 'SELECT count(*) AS n FROM logins')
  assert.ok(
    logins >= storedBefore,
    `${logins} logins in the copy, ${storedBefore} acknowledged before`,
  )
  assert.ok(
    // Up to one login per client may be committed but not yet acknowledged.
    logins <= storedAfter + 8,
    `${logins} logins in the copy, ${storedAfter} acknowledged after`,
  )
  assert.equal(count(copy, 'SELECT sum(logins) AS n FROM accounts'), logins)
  assert.equal(count(copy, 'SELECT sum(logins) AS n FROM devices'), logins)
  assert.equal(
    count(copy, 'SELECT sum(devices) AS n FROM accounts'),
    count(copy, 'SELECT count(*) AS n FROM devices'),
  )
  assert.deepEqual(
    readdirSync(cwd).filter((name) => name.includes('partial')),
    [],
  )
})

test('backup refuses to overwrite a file', async (t) => {
  const cwd = tempDir(t)
  await startServerProcess(t, cwd)
  writeFileSync(join(cwd, 'copy.db'), 'keep me')

  const backup = await runCommand(cwd, ['backup', 'copy.db'])

  assert.equal(backup.code, 1)
  assert.match(backup.stderr, /copy\.db already exists/)
})

test('backup names a missing database', async (t) => {
  const cwd = tempDir(t)

  const backup = await runCommand(cwd, ['backup', '--db-path', 'nowhere.db', 'copy.db'])

  assert.equal(backup.code, 1)
  assert.match(backup.stderr, /no database at .*nowhere\.db/)
})

test('backup without FILE prints the usage', async (t) => {
  const backup = await runCommand(tempDir(t), ['backup'])

  assert.equal(backup.code, 2)
  assert.match(backup.stderr, /Usage: iot-metrics backup FILE/)
})
