/**
 * Measures logins per second through POST /metrics/batch (100 logins per
 * request, plain JSON and gzip) against one login per POST /metrics request.
 * Each run of a mode gets a fresh server process on a temporary database and
 * the same number of concurrent keep-alive connections; this process is the
 * load generator. The modes take turns for several rounds, so a change in the
 * machine's background load affects them alike. Run with
 * `npm run bench:batch [-- --duration 5 --rounds 2 --concurrency 16]`.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { gzipSync } from 'node:zlib'
import { generateToken } from '../src/tokens.js'

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url))

interface Mode {
  name: string
  path: string
  loginsPerRequest: number
  encode: (logins: object[]) => { body: Buffer; headers: Record<string, string> }
}

const MODES: Mode[] = [
  {
    name: 'single login per request (POST /metrics)',
    path: '/metrics',
    loginsPerRequest: 1,
    encode: (logins) => ({ body: Buffer.from(JSON.stringify(logins[0])), headers: {} }),
  },
  {
    name: '100 logins per request (POST /metrics/batch)',
    path: '/metrics/batch',
    loginsPerRequest: 100,
    encode: (logins) => ({ body: Buffer.from(JSON.stringify(logins)), headers: {} }),
  },
  {
    name: '100 logins per request, gzip (POST /metrics/batch)',
    path: '/metrics/batch',
    loginsPerRequest: 100,
    encode: (logins) => ({
      body: gzipSync(JSON.stringify(logins)),
      headers: { 'content-encoding': 'gzip' },
    }),
  },
]

interface Server {
  child: ChildProcess
  url: string
  ca: Buffer
  token: string
  dir: string
}

async function startServer(): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'iotm-bench-batch-'))
  const token = generateToken()
  const child = spawn(process.execPath, [CLI, 'start'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: '0',
      INGEST_TOKENS: token,
      READ_TOKENS: generateToken(),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })

  const url = await new Promise<string>((resolve, reject) => {
    let buffered = ''
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) {
        if (line.includes('"msg":"server listening"')) {
          child.stdout?.off('data', onData)
          // Drains the request log, so the server does not block on a full pipe.
          child.stdout?.resume()
          resolve(JSON.parse(line).url)
        }
      }
    }
    child.stdout?.on('data', onData)
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening`)))
  })

  return { child, url, ca: readFileSync(join(dir, 'certs', 'ca-cert.pem')), token, dir }
}

async function stopServer(server: Server): Promise<void> {
  const exit = once(server.child, 'exit')
  server.child.kill('SIGTERM')
  await exit
  rmSync(server.dir, { recursive: true, force: true })
}

function post(
  server: Server,
  agent: Agent,
  path: string,
  body: Buffer,
  headers: Record<string, string>,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      `${server.url}${path}`,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${server.token}`,
          'content-type': 'application/json',
          'content-length': String(body.length),
          ...headers,
        },
      },
      (response) => {
        response.resume()
        response.on('end', () => resolve(response.statusCode ?? 0))
      },
    )
    request.on('error', reject)
    request.end(body)
  })
}

interface Result {
  mode: string
  requests: number
  logins: number
  seconds: number
  loginsPerSecond: number
  requestsPerSecond: number
}

async function runMode(mode: Mode, seconds: number, concurrency: number): Promise<Result> {
  const server = await startServer()
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, ca: server.ca })
  let sequence = 0
  const nextLogins = (): object[] =>
    Array.from({ length: mode.loginsPerRequest }, () => {
      sequence++
      return {
        account_id: `bench-account-${sequence % 50}`,
        user_id: `bench-device-${sequence % 5000}`,
        timestamp: new Date(Date.UTC(2026, 0, 1) + sequence).toISOString(),
      }
    })

  let requests = 0
  let logins = 0
  let measuring = false
  // A short warm-up fills the connection pool and lets the server's JIT settle.
  const warmUpEnds = Date.now() + 2000
  const ends = warmUpEnds + seconds * 1000
  let started = 0n

  const worker = async () => {
    while (Date.now() < ends) {
      const { body, headers } = mode.encode(nextLogins())
      const status = await post(server, agent, mode.path, body, headers)
      if (status !== 201 && status !== 200) {
        throw new Error(`${mode.path} returned ${status}`)
      }
      if (!measuring && Date.now() >= warmUpEnds) {
        measuring = true
        started = process.hrtime.bigint()
      }
      if (measuring) {
        requests++
        logins += mode.loginsPerRequest
      }
    }
  }

  let finished: bigint
  try {
    await Promise.all(Array.from({ length: concurrency }, worker))
    finished = process.hrtime.bigint()
  } finally {
    agent.destroy()
    await stopServer(server)
  }
  const elapsed = Number(finished - started) / 1e9

  return {
    mode: mode.name,
    requests,
    logins,
    seconds: elapsed,
    loginsPerSecond: Math.round(logins / elapsed),
    requestsPerSecond: Math.round(requests / elapsed),
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '16' },
    },
  })
  const seconds = Number(values.duration)
  const rounds = Number(values.rounds)
  const concurrency = Number(values.concurrency)
  if (
    !(seconds > 0 && seconds <= 120) ||
    !(Number.isInteger(rounds) && rounds >= 1 && rounds <= 10) ||
    !(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 256)
  ) {
    throw new Error(
      '--duration must be 1 to 120 seconds, --rounds 1 to 10 and --concurrency 1 to 256',
    )
  }

  process.stdout.write(
    `batch benchmark: ${rounds} rounds of ${seconds} s per mode, ${concurrency} connections, Node ${process.version}, ${cpus().length} CPUs\n`,
  )
  const totals = MODES.map(() => ({ logins: 0, requests: 0, seconds: 0 }))
  for (let round = 1; round <= rounds; round++) {
    for (const [index, mode] of MODES.entries()) {
      const result = await runMode(mode, seconds, concurrency)
      const total = totals[index] as { logins: number; requests: number; seconds: number }
      total.logins += result.logins
      total.requests += result.requests
      total.seconds += result.seconds
      process.stdout.write(
        `round ${round}, ${result.mode}: ${result.loginsPerSecond} logins/s (${result.requestsPerSecond} requests/s)\n`,
      )
    }
  }

  const rates = totals.map((total) => total.logins / total.seconds)
  const baseline = rates[0] as number
  process.stdout.write('\nmode | logins/s | requests/s | vs single\n')
  for (const [index, mode] of MODES.entries()) {
    const total = totals[index] as { logins: number; requests: number; seconds: number }
    const rate = rates[index] as number
    process.stdout.write(
      `${mode.name} | ${Math.round(rate)} | ${Math.round(total.requests / total.seconds)} | ${(rate / baseline).toFixed(1)}x\n`,
    )
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench-batch: ${(error as Error).stack ?? String(error)}\n`)
  process.exit(1)
})
