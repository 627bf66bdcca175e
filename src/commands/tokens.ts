import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import type Database from 'better-sqlite3'
import { ConfigError, DEFAULT_DB_PATH, OPTIONS } from '../config.js'
import { normalizeId } from '../login.js'
import { openDatabase } from '../sqlite-store.js'
import { createTokenStore, type ManagedTokenInfo } from '../token-store.js'
import type { Scope } from '../tokens.js'

const USAGE = [
  'Usage:',
  '  iot-metrics tokens create --scope ingest|read [--account ID] [--name NAME]',
  '  iot-metrics tokens list [--all] [--json]',
  '  iot-metrics tokens revoke ID',
  '',
  'Every subcommand takes --db-path FILE (DB_PATH), the database of the server;',
  'it may run while the server does, which sees the change within a second.',
  '',
  'create   prints a new token on stdout, the only time it is shown; only its',
  '         SHA-256 is stored. --account binds an ingest token to one account.',
  'list     shows the tokens that are not revoked (--all: revoked ones too).',
  'revoke   makes a token invalid; the running server rejects it within a second.',
].join('\n')

const ID_PATTERN = /^[\x21-\x7e]{1,128}$/
const MAX_NAME_LENGTH = 100

/** Output streams of the command: the CLI passes the process streams, tests their own. */
export interface CommandOutput {
  stdout(text: string): void
  stderr(text: string): void
}

function dbPathOf(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const text = flag ?? env[OPTIONS['db-path'].env]

  return resolve(text === undefined || text.trim() === '' ? DEFAULT_DB_PATH : text.trim())
}

/** Opens the server's database; list and revoke require it to exist, so a wrong path is not silently a new empty database. */
function openExisting(dbPath: string, create: boolean): Database.Database {
  if (!create && !existsSync(dbPath)) {
    throw new ConfigError(
      `no database at ${dbPath}; pass the server's --db-path or DB_PATH, or start the server once`,
    )
  }

  return openDatabase({ path: dbPath })
}

function parseScope(text: string | undefined): Scope {
  if (text === 'ingest' || text === 'read') {
    return text
  }

  throw new ConfigError(
    text === undefined
      ? '--scope is required: ingest (POST /metrics) or read (the GET endpoints)'
      : `invalid --scope ${JSON.stringify(text)}: expected ingest or read`,
  )
}

function parseAccount(text: string | undefined, scope: Scope): string | undefined {
  if (text === undefined) {
    return undefined
  }
  if (scope !== 'ingest') {
    throw new ConfigError('--account binds ingest tokens only; a read token reads every account')
  }
  if (!ID_PATTERN.test(text)) {
    throw new ConfigError(
      `invalid --account ${JSON.stringify(text)}: expected 1 to 128 printable ASCII characters without spaces, like account_id`,
    )
  }

  // Stored the way POST /metrics stores account_id, so a bound UUID matches in any case.
  return normalizeId(text)
}

function parseName(text: string | undefined): string | undefined {
  if (text === undefined) {
    return undefined
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this rejects.
  if (text.length === 0 || text.length > MAX_NAME_LENGTH || /[\x00-\x1f\x7f]/.test(text)) {
    throw new ConfigError(
      `invalid --name: expected 1 to ${MAX_NAME_LENGTH} characters without control characters`,
    )
  }

  return text
}

function parseId(text: string | undefined): number {
  if (text === undefined || !/^[1-9]\d{0,15}$/.test(text)) {
    throw new ConfigError(
      `invalid token id ${JSON.stringify(text ?? '')}: expected the number shown by iot-metrics tokens list`,
    )
  }

  return Number(text)
}

function formatTime(date: Date | null): string {
  return date === null ? '-' : `${date.toISOString().slice(0, 19)}Z`
}

function formatTable(tokens: ManagedTokenInfo[], includeRevoked: boolean): string {
  const header = ['ID', 'NAME', 'SCOPE', 'ACCOUNT', 'CREATED', 'LAST USED']
  if (includeRevoked) {
    header.push('REVOKED')
  }
  const rows = tokens.map((token) => {
    const row = [
      String(token.id),
      token.name ?? '-',
      token.scope,
      token.accountId ?? '-',
      formatTime(token.createdAt),
      formatTime(token.lastUsedAt),
    ]
    if (includeRevoked) {
      row.push(formatTime(token.revokedAt))
    }

    return row
  })

  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] as string).length)),
  )

  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column] as number))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

function toJson(token: ManagedTokenInfo): Record<string, unknown> {
  return {
    id: token.id,
    name: token.name,
    scope: token.scope,
    account_id: token.accountId,
    created_at: token.createdAt.toISOString(),
    last_used_at: token.lastUsedAt?.toISOString() ?? null,
    revoked_at: token.revokedAt?.toISOString() ?? null,
  }
}

/**
 * Runs `iot-metrics tokens <subcommand>` and returns the exit code: 0 on
 * success, 1 when the token to revoke does not exist, 2 on a usage error.
 */
export function runTokensCommand(
  argv: string[],
  env: NodeJS.ProcessEnv,
  output: CommandOutput,
): number {
  const [subcommand, ...rest] = argv
  if (subcommand === undefined) {
    output.stderr(`${USAGE}\n`)
    return 2
  }
  if (subcommand === 'help' || subcommand === '--help') {
    output.stdout(`${USAGE}\n`)
    return 0
  }

  try {
    let parsed: ReturnType<typeof parseArgs>
    try {
      parsed = parseArgs({
        args: rest,
        options: {
          'db-path': { type: 'string' },
          scope: { type: 'string' },
          account: { type: 'string' },
          name: { type: 'string' },
          all: { type: 'boolean' },
          json: { type: 'boolean' },
        },
        strict: true,
        allowPositionals: true,
      })
    } catch (error) {
      throw new ConfigError(`${(error as Error).message}; run iot-metrics tokens help`)
    }
    const values = parsed.values as Record<string, string | boolean | undefined>
    const text = (name: string) => values[name] as string | undefined
    const dbPath = dbPathOf(text('db-path'), env)

    switch (subcommand) {
      case 'create': {
        const scope = parseScope(text('scope'))
        const accountId = parseAccount(text('account'), scope)
        const name = parseName(text('name'))
        const db = openExisting(dbPath, true)
        try {
          const { token, info } = createTokenStore(db).create({ scope, accountId, name })
          output.stdout(`${token}\n`)
          output.stderr(
            `created ${scope} token ${info.id}${accountId === undefined ? '' : ` bound to account ${accountId}`} in ${dbPath}; it is shown only this once\n`,
          )
        } finally {
          db.close()
        }
        return 0
      }

      case 'list': {
        const includeRevoked = values.all === true
        const db = openExisting(dbPath, false)
        try {
          const tokens = createTokenStore(db).list({ includeRevoked })
          output.stdout(
            values.json === true
              ? `${JSON.stringify(tokens.map(toJson))}\n`
              : `${formatTable(tokens, includeRevoked)}\n`,
          )
        } finally {
          db.close()
        }
        return 0
      }

      case 'revoke': {
        const id = parseId(parsed.positionals[0])
        const db = openExisting(dbPath, false)
        try {
          const result = createTokenStore(db).revoke(id)
          if (result === 'not-found') {
            output.stderr(`iot-metrics: no token with id ${id} in ${dbPath}\n`)
            return 1
          }
          output.stderr(
            result === 'revoked'
              ? `revoked token ${id}; the running server rejects it within a second\n`
              : `token ${id} was already revoked\n`,
          )
        } finally {
          db.close()
        }
        return 0
      }

      default:
        throw new ConfigError(
          `unknown tokens subcommand ${JSON.stringify(subcommand)}; run iot-metrics tokens help`,
        )
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      output.stderr(`iot-metrics: ${error.message}\n`)
      return 2
    }
    throw error
  }
}
