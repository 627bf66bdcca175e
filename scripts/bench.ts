import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { createServer } from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import Database from 'better-sqlite3'
import { generateDevCertificates } from '../src/dev-certs.js'
import { generateToken } from '../src/tokens.js'
import type { LoadResult } from './bench/load.js'
import { renderMarkdown } from './bench/report.js'
import { measureStorage, type StorageResult } from './bench/storage.js'

// `npm run bench`: the side-by-side ingest benchmark and the storage
// measures. Each target server runs in its own process and the load comes
// from another (bench/load.js); targets run interleaved, round after round.

const HELP = `Usage: npm run bench -- [options]
  --seconds N      duration of each load run in seconds (default 4)
  --rounds N       rounds of every run, interleaved (default 3)
  --size-at N      logins at which bytes on disk are measured (default 1000000)
  --queries-at N   logins at which query latency is measured (default 10000000)
  --skip-storage   only the HTTP runs
  --skip-http      only the storage measures
  --targets LIST   only these targets, comma-separated (default all)
  --modes TEXT     only the modes whose name contains TEXT
  --out DIR        where the JSON and Markdown results go (default bench/results)`

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    'size-at': { type: 'string', default: '1000000' },
    'queries-at': { type: 'string', default: '10000000' },
    'skip-storage': { type: 'boolean', default: false },
    'skip-http': { type: 'boolean', default: false },
    targets: { type: 'string' },
    modes: { type: 'string' },
    out: { type: 'string', default: join('bench', 'results') },
    help: { type: 'boolean', default: false },
  },
})
if (flags.help) {
  process.stdout.write(`${HELP}\n`)
  process.exit(0)
}

const seconds = Number(flags.seconds)
const rounds = Number(flags.rounds)
const CLI = new URL('../src/cli.js', import.meta.url).pathname
const BARE_SERVER = new URL('./bench/bare-server.js', import.meta.url).pathname
const LOAD = new URL('./bench/load.js', import.meta.url).pathname

/** One server configuration under test. */
export interface Target {
  name: string
  description: string
  kind: 'server' | 'bare'
  key: 'ecdsa' | 'rsa'
  env?: Record<string, string>
}

export interface Mode {
  name: string
  load: 'keepalive' | 'newconn'
  connections: number
  handshake?: 'full' | 'resumed'
  targets: string[]
}

export interface RunResult extends LoadResult {
  target: string
  mode: string
  round: number
  /** Sum over the server's processes of each one's peak resident set, in MB. */
  peakRssMb: number
  /** Peak of the server's summed proportional set size, sampled every PSS_SAMPLE_MS, in MB. */
  peakPssMb: number
  /** CPU time (user and system) of the server's processes per 2xx reply, in ms. */
  cpuMsPerLogin: number
  /** Rows in the logins table after the server stopped; only for our server. */
  storedRows?: number
  /** Replies with a 2xx status. */
  ok: number
}

const TARGETS: Target[] = [
  {
    name: 'A',
    description:
      'the server as shipped: ECDSA P-256, group commit on the event loop, synchronous=FULL',
    kind: 'server',
    key: 'ecdsa',
  },
  {
    name: 'B',
    description: 'bare Fastify 5 over the same TLS settings, same reply, nothing else',
    kind: 'bare',
    key: 'ecdsa',
  },
  {
    name: 'C',
    description: 'one transaction per login on the event loop (BATCH_SIZE=1, COMMIT_THREAD=off)',
    kind: 'server',
    key: 'ecdsa',
    env: { BATCH_SIZE: '1', COMMIT_THREAD: 'off' },
  },
  {
    name: 'A-thread',
    description: 'A with the commit on a worker thread (COMMIT_THREAD=on)',
    kind: 'server',
    key: 'ecdsa',
    env: { COMMIT_THREAD: 'on' },
  },
  {
    name: 'A-rsa',
    description: 'A with an RSA-2048 certificate',
    kind: 'server',
    key: 'rsa',
  },
  {
    name: 'A-2w',
    description: 'A with two worker processes (WORKERS=2)',
    kind: 'server',
    key: 'ecdsa',
    env: { WORKERS: '2' },
  },
]

const MODES: Mode[] = [
  { name: 'keep-alive, 1 connection', load: 'keepalive', connections: 1, targets: ['A', 'B', 'C'] },
  {
    name: 'keep-alive, 32 connections',
    load: 'keepalive',
    connections: 32,
    targets: ['A', 'B', 'C', 'A-thread', 'A-2w'],
  },
  {
    name: 'keep-alive, 128 connections',
    load: 'keepalive',
    connections: 128,
    targets: ['A', 'B', 'C'],
  },
  {
    name: 'new connection per login, full handshake, 32 at once',
    load: 'newconn',
    connections: 32,
    handshake: 'full',
    targets: ['A', 'B', 'A-rsa', 'A-2w'],
  },
  {
    name: 'new connection per login, resumed session, 32 at once',
    load: 'newconn',
    connections: 32,
    handshake: 'resumed',
    targets: ['A', 'B', 'A-rsa'],
  },
]

interface Setup {
  dir: string
  ca: string
  certs: Record<'ecdsa' | 'rsa', { cert: string; key: string }>
  ingestToken: string
  readToken: string
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Writes the dev CA with its ECDSA server certificate, and an RSA-2048 one from the same CA. */
function prepare(dir: string): Setup {
  const ecdsa = generateDevCertificates(join(dir, 'certs'))
  const rsaKey = join(dir, 'certs', 'rsa-key.pem')
  const rsaCert = join(dir, 'certs', 'rsa-cert.pem')
  const csr = join(dir, 'certs', 'rsa.csr')
  const ext = join(dir, 'certs', 'rsa.ext')
  openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', rsaKey])
  openssl(['req', '-new', '-key', rsaKey, '-subj', '/CN=localhost', '-out', csr])
  writeFileSync(
    ext,
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
  )
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ecdsa.caCert,
    '-CAkey',
    ecdsa.caKey,
    '-set_serial',
    '0x1234',
    '-days',
    '30',
    '-sha256',
    '-extfile',
    ext,
    '-out',
    rsaCert,
  ])

  return {
    dir,
    ca: ecdsa.caCert,
    certs: {
      ecdsa: { cert: ecdsa.serverCert, key: ecdsa.serverKey },
      rsa: { cert: rsaCert, key: rsaKey },
    },
    ingestToken: generateToken(),
    readToken: generateToken(),
  }
}

async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()

  return typeof address === 'object' && address !== null ? address.port : 0
}

function isHealthy(port: number, ca: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = request(
      { host: '127.0.0.1', port, path: '/healthz', ca, agent: false, timeout: 1000 },
      (response) => {
        response.resume()
        resolve(response.statusCode === 200)
      },
    )
    probe.on('error', () => resolve(false))
    probe.on('timeout', () => probe.destroy())
    probe.end()
  })
}

async function waitUntilHealthy(port: number, ca: Buffer, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`the server exited with ${child.exitCode} before it was ready`)
    }
    if (await isHealthy(port, ca)) {
      return
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`the server on port ${port} was not ready within 30 s`)
}

/** Lists the server process and its children (the workers of WORKERS=N). */
function processTree(pid: number): number[] {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim()
    return [pid, ...children.split(/\s+/).filter(Boolean).map(Number)]
  } catch {
    return [pid]
  }
}

/** Sums the peak resident set (VmHWM) of the processes, in MB; 0 without /proc. */
function peakRssMb(pids: number[]): number {
  let kilobytes = 0
  for (const pid of pids) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      kilobytes += Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0)
    } catch {
      // The process exited between the listing and the read.
    }
  }

  return Math.round(kilobytes / 1024)
}

/**
 * Sums the proportional set size (Pss) of the processes, in KiB; 0 without
 * /proc. Pss divides each shared page among the processes that map it, so
 * the node binary and the libraries that WORKERS=N processes share count
 * once in the sum, where a sum of RSS counts them once per process.
 */
function pssKiB(pids: number[]): number {
  let kilobytes = 0
  for (const pid of pids) {
    try {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
      kilobytes += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0)
    } catch {
      // The process exited between the listing and the read.
    }
  }

  return kilobytes
}

// The kernel keeps no peak of Pss, so the bench samples it during the load.
const PSS_SAMPLE_MS = 250

/** Sums the user and system CPU time of the processes, in ms; 0 without /proc. */
function cpuMs(pids: number[]): number {
  const ticksPerSecond = 100
  let ticks = 0
  for (const pid of pids) {
    try {
      // Fields after the command name, which is in parentheses and may hold spaces.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // The process exited between the listing and the read.
    }
  }

  return (ticks * 1000) / ticksPerSecond
}

function startTarget(target: Target, setup: Setup, port: number, dbPath: string): ChildProcess {
  const { cert, key } = setup.certs[target.key]
  if (target.kind === 'bare') {
    return spawn(process.execPath, [BARE_SERVER, String(port), cert, key], { stdio: 'ignore' })
  }

  return spawn(process.execPath, [CLI, 'start'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: String(port),
      DB_PATH: dbPath,
      TLS_CERT: cert,
      TLS_KEY: key,
      TLS_CA: setup.ca,
      INGEST_TOKENS: setup.ingestToken,
      READ_TOKENS: setup.readToken,
      ...target.env,
    },
  })
}

async function runLoad(mode: Mode, port: number, setup: Setup, seed: number): Promise<LoadResult> {
  const args = [
    LOAD,
    mode.load,
    String(port),
    String(mode.connections),
    String(seconds),
    setup.ca,
    setup.ingestToken,
    String(seed),
    mode.handshake ?? 'full',
  ]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  const [code] = await once(child, 'exit')
  if (code !== 0) {
    throw new Error(`the load generator exited with ${code}`)
  }

  return JSON.parse(output) as LoadResult
}

function countRows(dbPath: string): number {
  const db = new Database(dbPath, { readonly: true })
  try {
    return (db.prepare('SELECT count(*) AS n FROM logins').get() as { n: number }).n
  } finally {
    db.close()
  }
}

async function runOne(
  target: Target,
  mode: Mode,
  round: number,
  setup: Setup,
  seed: number,
): Promise<RunResult> {
  const port = await freePort()
  const runDir = mkdtempSync(join(setup.dir, 'run-'))
  const dbPath = join(runDir, 'metrics.db')
  const child = startTarget(target, setup, port, dbPath)
  const exit = once(child, 'exit')
  try {
    await waitUntilHealthy(port, readFileSync(setup.ca), child)
    const cpuBefore = cpuMs(processTree(child.pid as number))
    let peakPss = pssKiB(processTree(child.pid as number))
    const sampler = setInterval(() => {
      peakPss = Math.max(peakPss, pssKiB(processTree(child.pid as number)))
    }, PSS_SAMPLE_MS)
    const load = await runLoad(mode, port, setup, seed).finally(() => clearInterval(sampler))
    const pids = processTree(child.pid as number)
    peakPss = Math.max(peakPss, pssKiB(pids))
    const rss = peakRssMb(pids)
    const cpu = cpuMs(pids) - cpuBefore
    child.kill('SIGTERM')
    await exit

    const ok = Object.entries(load.statuses)
      .filter(([code]) => code.startsWith('2'))
      .reduce((sum, [, count]) => sum + count, 0)
    const result: RunResult = {
      ...load,
      target: target.name,
      mode: mode.name,
      round,
      peakRssMb: rss,
      peakPssMb: Math.round(peakPss / 1024),
      cpuMsPerLogin: ok === 0 ? 0 : Math.round((cpu / ok) * 1000) / 1000,
      ok,
    }
    if (target.kind === 'server') {
      result.storedRows = countRows(dbPath)
    }

    return result
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
    }
    rmSync(runDir, { recursive: true, force: true })
  }
}

const selectedTargets = flags.targets?.split(',')
const isSelected = (name: string) => selectedTargets === undefined || selectedTargets.includes(name)
const selectedModes = MODES.filter(
  (mode) => flags.modes === undefined || mode.name.includes(flags.modes),
)

async function runHttp(setup: Setup): Promise<RunResult[]> {
  const results: RunResult[] = []
  let seed = 0
  for (let round = 1; round <= rounds; round++) {
    for (const mode of selectedModes) {
      for (const name of mode.targets.filter(isSelected)) {
        const target = TARGETS.find((each) => each.name === name) as Target
        const result = await runOne(target, mode, round, setup, seed++)
        results.push(result)
        process.stderr.write(
          `round ${round} ${mode.name} ${name}: ${Math.round(result.ratePerSecond)}/s p50 ${result.p50Ms.toFixed(2)} ms p99 ${result.p99Ms.toFixed(2)} ms cpu ${result.cpuMsPerLogin} ms/login rss ${result.peakRssMb} MB` +
            `${result.storedRows === undefined ? '' : ` stored ${result.storedRows}/${result.ok}`}\n`,
        )
      }
    }
  }

  return results
}

const started = new Date()
const dir = mkdtempSync(join(tmpdir(), 'iotm-bench-'))
try {
  const setup = prepare(dir)
  const loadBefore = loadavg()
  const http = flags['skip-http'] ? [] : await runHttp(setup)

  let storage: StorageResult | undefined
  if (!flags['skip-storage']) {
    process.stderr.write('storage: loading logins through the store\n')
    storage = measureStorage({
      dir,
      sizeAt: Number(flags['size-at']),
      queriesAt: Number(flags['queries-at']),
      accounts: 1000,
      usersPerAccount: 10,
      samples: 500,
    })
  }

  const report = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      loadAverageBefore: loadBefore.map((value) => Math.round(value * 100) / 100),
      loadAverageAfter: loadavg().map((value) => Math.round(value * 100) / 100),
    },
    secondsPerRun: seconds,
    rounds,
    targets: TARGETS,
    modes: selectedModes,
    runs: http,
    storage,
  }

  const out = flags.out as string
  mkdirSync(out, { recursive: true })
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  const markdown = renderMarkdown(report)
  writeFileSync(join(out, `bench-${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`)
  writeFileSync(join(out, `bench-${stamp}.md`), markdown)
  writeFileSync(join(out, 'latest.md'), markdown)
  process.stdout.write(markdown)
  process.stderr.write(`results written to ${join(out, `bench-${stamp}.{json,md}`)}\n`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}

export type BenchReport = {
  startedAt: string
  finishedAt: string
  command: string
  machine: {
    cpus: number
    cpuModel: string
    node: string
    loadAverageBefore: number[]
    loadAverageAfter: number[]
  }
  secondsPerRun: number
  rounds: number
  targets: Target[]
  modes: Mode[]
  runs: RunResult[]
  storage: StorageResult | undefined
}
