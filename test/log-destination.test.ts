import assert from 'node:assert/strict'
import { execFile, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createLogDestination } from '../src/log-destination.js'
import { tempDir } from './helpers.js'

const LOGGER_MODULE = fileURLToPath(new URL('../src/logger.js', import.meta.url))
const DESTINATION_MODULE = fileURLToPath(new URL('../src/log-destination.js', import.meta.url))

function numberedLines(count: number, width = 0): string[] {
  return Array.from({ length: count }, (_, index) => `${`{"n":${index}}`.padEnd(width, ' ')}\n`)
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const giveUpAt = Date.now() + 5000
  while (!condition()) {
    if (Date.now() > giveUpAt) {
      assert.fail(`timed out waiting for ${what}`)
    }
    await sleep(10)
  }
}

test('log destination writes lines in order', async (t) => {
  const path = join(tempDir(t), 'log')
  const fd = openSync(path, 'w')
  t.after(() => closeSync(fd))
  const destination = createLogDestination({ fd, minLength: 256, flushIntervalMs: 20 })
  const lines = numberedLines(5000)

  for (const line of lines) {
    destination.write(line)
  }

  await waitFor(() => readFileSync(path, 'utf8') === lines.join(''), 'all 5000 lines in the file')
  destination.end()
})

test('log destination cuts writes at maxWriteBytes', async (t) => {
  const path = join(tempDir(t), 'log')
  const fd = openSync(path, 'w')
  t.after(() => closeSync(fd))
  const destination = createLogDestination({ fd, minLength: 1, maxWriteBytes: 256 })
  // A line longer than maxWriteBytes goes out alone, and whole.
  const lines = [...numberedLines(200, 99), `${'y'.repeat(600)}\n`, ...numberedLines(50, 99)]

  for (const line of lines) {
    destination.write(line)
  }

  await waitFor(() => readFileSync(path, 'utf8') === lines.join(''), 'every line in the file')
  destination.end()
})

test('log destination keeps lines whole in a shared pipe', async () => {
  const script = `
    const { createLogDestination } = await import(${JSON.stringify(DESTINATION_MODULE)})
    const destination = createLogDestination({ fd: 1, maxWriteBytes: 4096 })
    process.on('exit', () => destination.flushSync())
    const pad = 'x'.repeat(100)
    for (let i = 0; i < 30000; i++) {
      destination.write(JSON.stringify({ writer: process.argv[1], i, pad }) + '\\n')
    }
  `
  // Two writers on one pipe, as the workers of WORKERS=2 share the
  // primary's stdout. Without the cut, large writes interleave mid-line.
  const child = spawn(
    'sh',
    [
      '-c',
      '"$NODE" --input-type=module -e "$SCRIPT" a & "$NODE" --input-type=module -e "$SCRIPT" b & wait',
    ],
    {
      env: { ...process.env, NODE: process.execPath, SCRIPT: script },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  let output = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => {
    output += chunk
  })
  const [code] = await once(child, 'close')

  assert.equal(code, 0)
  const counts = new Map<string, number>()
  const corrupt: string[] = []
  for (const line of output.split('\n').filter((entry) => entry !== '')) {
    try {
      const entry = JSON.parse(line) as { writer: string }
      counts.set(entry.writer, (counts.get(entry.writer) ?? 0) + 1)
    } catch {
      corrupt.push(line.slice(0, 80))
    }
  }
  assert.deepEqual(corrupt, [])
  assert.equal(counts.get('a'), 30000)
  assert.equal(counts.get('b'), 30000)
})

test('log destination writes a short buffer after the interval', async (t) => {
  const path = join(tempDir(t), 'log')
  const fd = openSync(path, 'w')
  t.after(() => closeSync(fd))
  const destination = createLogDestination({ fd, minLength: 4096, flushIntervalMs: 30 })

  destination.write('{"short":true}\n')
  assert.equal(readFileSync(path, 'utf8'), '', 'a line under minLength waits for the timer')

  await waitFor(() => readFileSync(path, 'utf8') === '{"short":true}\n', 'the timer to write it')
  destination.end()
})

test('log destination flushSync writes the buffer at once', (t) => {
  const path = join(tempDir(t), 'log')
  const fd = openSync(path, 'w')
  t.after(() => closeSync(fd))
  const destination = createLogDestination({ fd, minLength: 1 << 20, flushIntervalMs: 60_000 })
  const lines = numberedLines(100)

  for (const line of lines) {
    destination.write(line)
  }
  assert.equal(readFileSync(path, 'utf8'), '')
  destination.flushSync()

  assert.equal(readFileSync(path, 'utf8'), lines.join(''))
  destination.end()
})

test('log destination drops and counts lines past its cap', async (t) => {
  const path = join(tempDir(t), 'log')
  const fd = openSync(path, 'w')
  t.after(() => closeSync(fd))
  const reports: number[] = []
  const destination = createLogDestination({
    fd,
    minLength: 1,
    maxBufferedBytes: 4096,
    flushIntervalMs: 20,
    onDropped: (count) => reports.push(count),
  })
  const lines = numberedLines(2000, 99)

  // One synchronous burst: the first line starts a write, the next 4096
  // bytes wait for it, and the rest find the buffer full.
  const accepted = lines.map((line) => destination.write(line))

  await waitFor(() => reports.length > 0, 'the dropped-lines report')
  const written = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
  const dropped = accepted.filter((ok) => !ok).length
  assert.equal(reports.length, 1)
  assert.equal(reports[0], dropped)
  assert.equal(written.length + dropped, lines.length)
  assert.ok(dropped > 1900, `expected most of the burst dropped, got ${dropped}`)
  assert.equal(written[0]?.trimEnd(), '{"n":0}', 'the lines kept are the first ones')
  destination.end()
})

test('log destination waits out a full pipe', async (t) => {
  const fifo = join(tempDir(t), 'fifo')
  execFileSync('mkfifo', [fifo])
  // O_RDWR opens a FIFO without waiting for a reader; O_NONBLOCK makes a
  // write to a full pipe fail with EAGAIN, as stdout piped to a slow reader does.
  const writeFd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK)
  const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
  t.after(() => {
    closeSync(writeFd)
    closeSync(readFd)
  })
  const destination = createLogDestination({ fd: writeFd, minLength: 1, flushIntervalMs: 20 })
  // 300 KB: several times the capacity of a Linux pipe (64 KiB by default).
  const lines = numberedLines(3000, 99)
  const expected = lines.join('')

  for (const line of lines) {
    destination.write(line)
  }
  await sleep(50)
  let received = ''
  const chunk = Buffer.alloc(65_536)
  await waitFor(() => {
    try {
      received += chunk.subarray(0, readSync(readFd, chunk)).toString()
    } catch (error) {
      assert.equal((error as NodeJS.ErrnoException).code, 'EAGAIN')
    }
    return received.length >= expected.length
  }, 'the reader to receive every line')

  assert.equal(received, expected)
  destination.end()
})

test('logger writes every line when the process exits at once', async () => {
  const script = `
    const { createLogger } = await import(${JSON.stringify(LOGGER_MODULE)})
    const logger = createLogger('info')
    for (let i = 0; i < 20000; i++) logger.info({ i }, 'line')
    process.exit(0)
  `

  // execFile rejects on a non-zero exit, and resolves once stdout is closed.
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', script],
    { maxBuffer: 64 * 1024 * 1024 },
  )

  const lines = stdout.split('\n').filter((line) => line !== '')
  assert.equal(lines.length, 20000)
  assert.equal(JSON.parse(lines.at(-1) ?? '{}').i, 19999)
})
