import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Login } from '../src/login.js'
import { createSqliteStore, openDatabase } from '../src/sqlite-store.js'
import { generateToken } from '../src/tokens.js'

// Measures the server's resident memory while it exports every login of a
// large database, against its memory after start and one JSON page.
// Usage: npm run bench:export [-- LOGINS]   (default 1,000,000 logins)
// Linux only: it reads the child's VmRSS and VmHWM from /proc.

const LOGINS = Number(process.argv[2] ?? 1_000_000)
const ACCOUNTS = 100
const DEVICES_PER_ACCOUNT = 100
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))

function memoryOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1])

  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 }
}

function fillDatabase(path: string): void {
  const db = openDatabase({ path, synchronous: 'NORMAL' })
  const store = createSqliteStore(db)
  const accounts = Array.from({ length: ACCOUNTS }, () => randomUUID())
  const devices = accounts.map(() => Array.from({ length: DEVICES_PER_ACCOUNT }, randomUUID))
  const start = 1_700_000_000_000_000_000n
  let batch: Login[] = []
  for (let i = 0; i < LOGINS; i++) {
    const account = i % ACCOUNTS
    batch.push({
      accountId: accounts[account] as string,
      userId: devices[account]?.[Math.floor(i / ACCOUNTS) % DEVICES_PER_ACCOUNT] as string,
      timestampNs: start + BigInt(i) * 1_000_123n,
    })
    if (batch.length === 20_000) {
      store.commitBatch(batch)
      batch = []
    }
  }
  store.commitBatch(batch)
  store.checkpoint()
  store.close()
}

async function startServer(cwd: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, 'start'], {
    cwd,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: '0',
      NODE_OPTIONS: process.env.NODE_OPTIONS ?? '',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  // The port is read from the start line; later log lines are discarded.
  let buffered = ''
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const match = /"url":"(https:[^"]+)".*"msg":"server listening"/.exec(buffered)
      if (match !== null) {
        resolve(match[1] as string)
      }
      buffered = buffered.slice(-4096)
    })
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)))
  })

  return { child, url }
}

interface Download {
  bytes: number
  lines: number
  seconds: number
  maxRssMb: number
  /** The server's RSS after each tenth of the logins, to show whether it levels off. */
  rssByTenthMb: number[]
}

/** Downloads `path` with the given Accept header while sampling the server's RSS. */
async function download(
  child: ChildProcess,
  url: string,
  path: string,
  accept: string,
  token: string,
  ca: Buffer,
): Promise<Download> {
  const pid = child.pid as number
  let maxRssMb = memoryOf(pid).rssMb
  const sampler = setInterval(() => {
    maxRssMb = Math.max(maxRssMb, memoryOf(pid).rssMb)
  }, 50)
  const started = process.hrtime.bigint()

  const req = request(`${url}${path}`, {
    ca,
    headers: { authorization: `Bearer ${token}`, accept },
  })
  req.end()
  const [response] = await once(req, 'response')
  let bytes = 0
  let lines = 0
  const rssByTenthMb: number[] = []
  for await (const chunk of response as AsyncIterable<Buffer>) {
    bytes += chunk.length
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) {
      lines++
      if (lines % (LOGINS / 10) === 0) {
        rssByTenthMb.push(memoryOf(pid).rssMb)
      }
    }
  }
  clearInterval(sampler)
  maxRssMb = Math.max(maxRssMb, memoryOf(pid).rssMb)

  return {
    bytes,
    lines,
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    maxRssMb,
    rssByTenthMb,
  }
}

const dir = mkdtempSync(join(tmpdir(), 'iotm-export-bench-'))
try {
  const fillStarted = Date.now()
  fillDatabase(join(dir, 'data', 'metrics.db'))
  process.stdout.write(`stored ${LOGINS} logins in ${(Date.now() - fillStarted) / 1000} s\n`)

  const read = generateToken()
  const { child, url } = await startServer(dir, {
    INGEST_TOKENS: generateToken(),
    READ_TOKENS: read,
  })
  const ca = readFileSync(join(dir, 'certs', 'ca-cert.pem'))
  try {
    const page = await download(child, url, '/logins?limit=1000', 'application/json', read, ca)
    const baseline = memoryOf(child.pid as number).rssMb
    const ndjson = await download(child, url, '/logins', 'application/x-ndjson', read, ca)
    const csv = await download(child, url, '/logins', 'text/csv', read, ca)
    // A third pass shows whether the RSS levels off or keeps growing.
    const again = await download(child, url, '/logins', 'application/x-ndjson', read, ca)
    const peak = memoryOf(child.pid as number).peakMb

    const row = (name: string, run: Download) =>
      `${name.padEnd(22)} ${String(run.lines).padStart(9)} lines ${(run.bytes / 1_048_576).toFixed(1).padStart(7)} MB ${run.seconds.toFixed(2).padStart(7)} s   max RSS ${run.maxRssMb.toFixed(1)} MB` +
      (run.rssByTenthMb.length === 0
        ? ''
        : `\n${''.padEnd(22)} RSS after each tenth: ${run.rssByTenthMb.map((mb) => mb.toFixed(0)).join(' ')} MB`)
    process.stdout.write(
      [
        row('JSON page (baseline)', page),
        `RSS after start and one JSON page: ${baseline.toFixed(1)} MB`,
        row('NDJSON export', ndjson),
        row('CSV export', csv),
        row('NDJSON export again', again),
        `peak RSS of the server process (VmHWM): ${peak.toFixed(1)} MB, ${(peak / baseline).toFixed(2)} x the baseline`,
        peak < 150 ? 'peak RSS under 150 MB: ok' : 'peak RSS over 150 MB: FAILED',
        '',
      ].join('\n'),
    )
    process.exitCode =
      peak < 150 && ndjson.lines === LOGINS && csv.lines === LOGINS + 1 && again.lines === LOGINS
        ? 0
        : 1
  } finally {
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
