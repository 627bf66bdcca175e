import { parseArgs } from 'node:util'
import { createAdminUserStore, USERNAME_PATTERN } from '../dashboard/admin-users.js'
import { hashPassword, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../dashboard/passwords.js'
import { openDatabase } from '../sqlite-store.js'

const USAGE = `Usage: iot-metrics admin <command> NAME [--db-path PATH]

Manages the users who may sign in to the dashboard.

Commands:
  create NAME   add a user; asks for the password without echo
  passwd NAME   set a new password; ends the user's sessions
  delete NAME   remove a user and end their sessions
  list          list the users

When standard input is not a terminal, the password is its first line.
The database is DB_PATH or --db-path (default data/metrics.db).`

/** A mistake in how the command was called; the CLI prints the message and exits with 2. */
export class AdminCommandError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AdminCommandError'
  }
}

/** Reads one line from a terminal without echoing it. */
function readHiddenLine(prompt: string): Promise<string> {
  const input = process.stdin
  // Echo goes off before the prompt shows, so nothing typed after it is echoed.
  input.setRawMode(true)
  process.stderr.write(prompt)
  input.resume()
  input.setEncoding('utf8')

  return new Promise((resolve, reject) => {
    let line = ''
    const finish = (error?: Error) => {
      input.off('data', onData)
      input.setRawMode(false)
      input.pause()
      process.stderr.write('\n')
      if (error) {
        reject(error)
      } else {
        resolve(line)
      }
    }
    const onData = (chunk: string) => {
      for (const character of chunk) {
        if (character === '\r' || character === '\n') {
          finish()
          return
        }
        if (character === '\u0003' || character === '\u0004') {
          finish(new AdminCommandError('cancelled'))
          return
        }
        if (character === '\u007f' || character === '\b') {
          line = line.slice(0, -1)
        } else {
          line += character
        }
      }
    }
    input.on('data', onData)
  })
}

async function readStdinFirstLine(): Promise<string> {
  let text = ''
  for await (const chunk of process.stdin) {
    text += chunk.toString()
  }

  return text.split(/\r?\n/)[0] ?? ''
}

/** Asks for a new password: twice on a terminal, from the first line of standard input otherwise. */
async function readNewPassword(username: string): Promise<string> {
  let password: string
  if (process.stdin.isTTY) {
    password = await readHiddenLine(`Password for ${username}: `)
    const repeated = await readHiddenLine('Repeat the password: ')
    if (repeated !== password) {
      throw new AdminCommandError('the passwords do not match; nothing changed')
    }
  } else {
    password = await readStdinFirstLine()
    if (password === '') {
      throw new AdminCommandError(
        'no password was read from standard input; pipe it as the first line, or run the command on a terminal',
      )
    }
  }

  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new AdminCommandError(
      `the password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long, got ${password.length}`,
    )
  }
  return password
}

function requireUsername(name: string | undefined): string {
  if (name === undefined || !USERNAME_PATTERN.test(name)) {
    throw new AdminCommandError(
      `invalid user name ${JSON.stringify(name ?? '')}: expected 1 to 64 letters, digits and . _ @ -`,
    )
  }
  return name
}

/** Runs `iot-metrics admin ...` and returns the line to print on success. */
export async function runAdminCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<string> {
  let parsed: { values: { 'db-path'?: string; help?: boolean }; positionals: string[] }
  try {
    parsed = parseArgs({
      args: argv,
      options: { 'db-path': { type: 'string' }, help: { type: 'boolean' } },
      allowPositionals: true,
    })
  } catch (error) {
    throw new AdminCommandError(`${(error as Error).message}\n${USAGE}`)
  }

  const [command, name, ...extra] = parsed.positionals
  if (parsed.values.help === true || command === undefined || command === 'help') {
    return USAGE
  }
  if (extra.length > 0) {
    throw new AdminCommandError(`unexpected arguments ${extra.join(' ')}\n${USAGE}`)
  }

  const dbPath = parsed.values['db-path'] ?? env.DB_PATH ?? 'data/metrics.db'
  const run = async (
    work: (admins: ReturnType<typeof createAdminUserStore>) => Promise<string>,
  ) => {
    const db = openDatabase({ path: dbPath })
    try {
      return await work(createAdminUserStore(db))
    } finally {
      db.close()
    }
  }

  switch (command) {
    case 'create': {
      const username = requireUsername(name)
      const password = await readNewPassword(username)
      return run(async (admins) => {
        if (admins.find(username) !== undefined) {
          throw new AdminCommandError(
            `user ${username} exists; use admin passwd to change the password`,
          )
        }
        admins.create(username, await hashPassword(password))
        return `created dashboard user ${username}`
      })
    }
    case 'passwd': {
      const username = requireUsername(name)
      const password = await readNewPassword(username)
      return run(async (admins) => {
        if (!admins.setPassword(username, await hashPassword(password))) {
          throw new AdminCommandError(`dashboard user ${username} not found; see admin list`)
        }
        return `changed the password of ${username} and ended their sessions`
      })
    }
    case 'delete': {
      const username = requireUsername(name)
      return run(async (admins) => {
        if (!admins.remove(username)) {
          throw new AdminCommandError(`dashboard user ${username} not found; see admin list`)
        }
        return `deleted dashboard user ${username} and ended their sessions`
      })
    }
    case 'list':
      return run(async (admins) => {
        const lines = admins.list().map((admin) => `${admin.username}\tcreated ${admin.createdAt}`)
        return lines.length === 0
          ? 'no dashboard users; add one with admin create NAME'
          : lines.join('\n')
      })
    default:
      throw new AdminCommandError(`unknown admin command ${JSON.stringify(command)}\n${USAGE}`)
  }
}
