import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import { createLogger } from '../src/logger.js'

/** Creates a temporary folder that is removed when the test ends. */
export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'iotm-test-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))

  return dir
}

/** Creates a logger whose JSON lines are kept in `lines`, for tests that assert on logs. */
export function captureLogger(level = 'info'): { logger: Logger; lines: string[] } {
  const lines: string[] = []
  let partial = ''
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      partial += chunk.toString()
      const parts = partial.split('\n')
      partial = parts.pop() ?? ''
      lines.push(...parts.filter((line) => line.length > 0))
      callback()
    },
  })

  return { logger: createLogger(level, sink), lines }
}

export interface CommandResult {
  code: number | null
  stdout: string
  stderr: string
}

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))
const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url))

/**
 * Runs `iot-metrics ...args` in `cwd` with `input` on a piped stdin, so the
 * command sees no terminal, and collects its exit code and output.
 */
export async function runCommand(cwd: string, args: string[], input = ''): Promise<CommandResult> {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  child.stdin.end(input)
  const [code] = await once(child, 'exit')

  return { code: code as number | null, stdout, stderr }
}

/** Starts a process that holds the write lock of `dbPath` until `release()`. */
export async function holdWriteLock(
  t: TestContext,
  dbPath: string,
): Promise<{ release(): Promise<void> }> {
  const holder = spawn(
    process.execPath,
    [
      '-e',
      `const db = require('better-sqlite3')(process.argv[1]);
       db.exec('BEGIN IMMEDIATE'); console.log('locked');
       process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.exit(0) })`,
      dbPath,
    ],
    { cwd: PROJECT_ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
  )
  t.after(() => holder.kill('SIGKILL'))
  await once(holder.stdout, 'data')

  return {
    async release() {
      holder.stdin.write('release\n')
      await once(holder, 'exit')
    },
  }
}
