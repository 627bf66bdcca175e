import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { TestContext } from 'node:test'
import type { Logger } from 'pino'
import { createLogger } from '../src/logger.js'

/** Creates a temporary folder that is removed when the test ends. */
export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'iotm-test-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))

  return dir
}

/** A logger whose JSON lines are kept in `lines`, for tests that assert on logs. */
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
