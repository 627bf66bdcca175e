import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { verifyPassword } from '../src/dashboard/passwords.js'
import { runCommand, tempDir } from './helpers.js'

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))
const PASSWORD = 'twelve chars or more'

function storedHash(t: TestContext, cwd: string, username: string): string | undefined {
  const db = new Database(join(cwd, 'data', 'metrics.db'), { readonly: true })
  t.after(() => db.close())
  const row = db
    .prepare('SELECT password_hash FROM admin_users WHERE username = ?')
    .get(username) as { password_hash: string } | undefined

  return row?.password_hash
}

test('admin create reads the password from piped stdin', async (t) => {
  const cwd = tempDir(t)
  const result = await runCommand(cwd, ['admin', 'create', 'alice'], `${PASSWORD}\n`)

  assert.equal(result.code, 0, result.stderr)
  assert.equal(result.stdout, 'created dashboard user alice\n')
  const hash = storedHash(t, cwd, 'alice')
  assert.ok(hash)
  assert.equal(await verifyPassword(PASSWORD, hash), true)
  assert.equal(await verifyPassword('another password!', hash), false)
})

test('admin create rejects a short password', async (t) => {
  const cwd = tempDir(t)
  const result = await runCommand(cwd, ['admin', 'create', 'alice'], 'short\n')

  assert.equal(result.code, 2)
  assert.match(result.stderr, /must be 12 to 1024 characters long, got 5/)
})

test('admin create rejects an existing user', async (t) => {
  const cwd = tempDir(t)
  await runCommand(cwd, ['admin', 'create', 'alice'], `${PASSWORD}\n`)
  const result = await runCommand(cwd, ['admin', 'create', 'alice'], `${PASSWORD}\n`)

  assert.equal(result.code, 2)
  assert.match(result.stderr, /user alice exists/)
})

test('admin create rejects an invalid user name', async (t) => {
  const cwd = tempDir(t)
  const result = await runCommand(cwd, ['admin', 'create', 'no spaces'], `${PASSWORD}\n`)

  assert.equal(result.code, 2)
  assert.match(result.stderr, /invalid user name "no spaces"/)
})

test('admin passwd replaces the hash and list shows users', async (t) => {
  const cwd = tempDir(t)
  await runCommand(cwd, ['admin', 'create', 'alice'], `${PASSWORD}\n`)
  const before = storedHash(t, cwd, 'alice')
  const changed = await runCommand(cwd, ['admin', 'passwd', 'alice'], 'a different password\n')
  const listed = await runCommand(cwd, ['admin', 'list'])

  assert.equal(changed.code, 0, changed.stderr)
  assert.notEqual(storedHash(t, cwd, 'alice'), before)
  assert.match(listed.stdout, /^alice\tcreated \d{4}-/)
})

test('admin delete removes the user', async (t) => {
  const cwd = tempDir(t)
  await runCommand(cwd, ['admin', 'create', 'alice'], `${PASSWORD}\n`)
  const result = await runCommand(cwd, ['admin', 'delete', 'alice'])

  assert.equal(result.code, 0, result.stderr)
  assert.equal(storedHash(t, cwd, 'alice'), undefined)
})

test('admin create on a terminal does not echo the password', async (t) => {
  const cwd = tempDir(t)
  // script(1) from util-linux gives the command a pseudo-terminal as its stdin.
  const child = spawn(
    'script',
    [
      '-qec',
      `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} admin create alice`,
      '/dev/null',
    ],
    { cwd, env: { PATH: process.env.PATH ?? '' }, stdio: ['pipe', 'pipe', 'pipe'] },
  )
  t.after(() => child.kill('SIGKILL'))
  let output = ''
  const prompts = ['Password for alice: ', 'Repeat the password: ']
  child.stdout.on('data', (chunk) => {
    output += chunk
    // Types the password only once a prompt shows, when the terminal no longer echoes.
    if (prompts.length > 0 && output.includes(prompts[0] as string)) {
      prompts.shift()
      child.stdin.write(`${PASSWORD}\r`)
    }
  })
  const [code] = await once(child, 'exit')

  assert.equal(code, 0, output)
  assert.match(output, /created dashboard user alice/)
  assert.ok(!output.includes(PASSWORD), `the password was echoed: ${JSON.stringify(output)}`)
  assert.ok(storedHash(t, cwd, 'alice'))
})
