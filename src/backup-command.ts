import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { BackupError, backupDatabase } from './backup.js'

export const BACKUP_USAGE = `Usage: iot-metrics backup FILE [--db-path PATH]

Writes a consistent copy of the database to FILE while the server keeps
running. FILE must not exist. The database is --db-path, else DB_PATH, else
data/metrics.db.`

const BAR_WIDTH = 30

function megabytes(bytes: number): string {
  return `${(bytes / 1_048_576).toFixed(1)} MB`
}

/** Draws the progress bar on one terminal line, redrawn in place. */
function drawProgress(written: number, total: number): void {
  const fraction = total > 0 ? Math.min(1, written / total) : 0
  const filled = Math.round(fraction * BAR_WIDTH)
  const bar = `${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}`
  const percent = `${Math.floor(fraction * 100)}`.padStart(3)
  process.stdout.write(`\r[${bar}] ${percent}%  ${megabytes(written)} of ~${megabytes(total)}`)
}

/**
 * Runs `iot-metrics backup FILE`. The progress bar is drawn only when
 * stdout is a terminal, so logs and scripts get the summary line alone.
 * Returns the process exit code.
 */
export async function runBackupCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let parsed: ReturnType<
    typeof parseArgs<{
      options: { 'db-path': { type: 'string' }; help: { type: 'boolean'; short: 'h' } }
      allowPositionals: true
    }>
  >
  try {
    parsed = parseArgs({
      args: argv,
      options: { 'db-path': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    })
  } catch (error) {
    process.stderr.write(`iot-metrics backup: ${(error as Error).message}\n${BACKUP_USAGE}\n`)
    return 2
  }
  if (parsed.values.help === true) {
    process.stdout.write(`${BACKUP_USAGE}\n`)
    return 0
  }
  if (parsed.positionals.length !== 1) {
    process.stderr.write(`iot-metrics backup: expected one FILE argument\n${BACKUP_USAGE}\n`)
    return 2
  }

  const dbPath = parsed.values['db-path'] ?? (env.DB_PATH?.trim() || join('data', 'metrics.db'))
  const target = parsed.positionals[0] as string
  const onTerminal = process.stdout.isTTY === true
  try {
    const result = await backupDatabase({
      source: resolve(dbPath),
      target,
      ...(onTerminal ? { onProgress: drawProgress } : {}),
    })
    if (onTerminal) {
      process.stdout.write('\n')
    }
    process.stdout.write(
      `backup written to ${result.target}: ${megabytes(result.bytes)}, ${result.logins} logins, ${result.accounts} accounts, schema version ${result.schemaVersion}, integrity ok, in ${(result.durationMs / 1000).toFixed(1)} s\n`,
    )
    return 0
  } catch (error) {
    if (onTerminal) {
      process.stdout.write('\n')
    }
    if (error instanceof BackupError) {
      process.stderr.write(`iot-metrics backup: ${error.message}\n`)
      return 1
    }
    throw error
  }
}
