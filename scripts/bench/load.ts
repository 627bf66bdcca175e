import { readFileSync } from 'node:fs'
import { connect, createSecureContext, type TLSSocket } from 'node:tls'
import autocannon from 'autocannon'
import { loginBody } from './login-body.js'

// The load generator, run as its own process by bench.ts so that it never
// shares an event loop with the orchestrator. It prints one JSON result line.
//
//   node load.js keepalive <port> <connections> <seconds> <ca> <token> <seed>
//   node load.js newconn <port> <connections> <seconds> <ca> <token> <seed> <full|resumed>

export interface LoadResult {
  requests: number
  /** Replies by status code; 0 counts connection errors and timeouts. */
  statuses: Record<string, number>
  ratePerSecond: number
  p50Ms: number
  p99Ms: number
  /** Of the new-connection runs: the share of handshakes that resumed a session. */
  resumedShare?: number
}

const [mode, portText, connectionsText, secondsText, caPath, token, seedText, handshake] =
  process.argv.slice(2)
const port = Number(portText)
const connections = Number(connectionsText)
const seconds = Number(secondsText)
const ca = readFileSync(caPath as string)
const seed = Number(seedText)
// One context for every connection: passing `ca` to each connect would parse
// the CA again per connection and make the client, not the server, the cost.
const secureContext = createSecureContext({ ca })

async function keepAlive(): Promise<LoadResult> {
  let index = 0
  const result = await autocannon({
    url: `https://127.0.0.1:${port}`,
    connections,
    duration: seconds,
    tlsOptions: { ca },
    requests: [
      {
        method: 'POST',
        path: '/metrics',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        setupRequest(request) {
          request.body = loginBody(seed, index++)
          return request
        },
      },
    ],
  })

  const statuses: Record<string, number> = {}
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) {
    statuses[code] = (stats as { count: number }).count
  }
  statuses['0'] = result.errors + result.timeouts

  return {
    requests: result.requests.total,
    statuses,
    ratePerSecond: result.requests.total / seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
  }
}

function percentile(sorted: number[], share: number): number {
  if (sorted.length === 0) {
    return 0
  }

  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * share))] as number
}

/** Sends one login on a new TLS connection and resolves with its status and whether the session resumed. */
function oneLogin(
  index: number,
  session: Buffer | undefined,
  onSession: (session: Buffer) => void,
): Promise<{ status: number; resumed: boolean }> {
  const body = loginBody(seed, index)
  const request =
    `POST /metrics HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nauthorization: Bearer ${token}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`

  return new Promise((resolve) => {
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, secureContext, session })
    let reply = ''
    socket.setEncoding('utf8')
    socket.on('session', onSession)
    let resumed = false
    socket.once('secureConnect', () => {
      resumed = socket.isSessionReused()
      socket.write(request)
    })
    socket.on('data', (chunk: string) => {
      reply += chunk
    })
    socket.once('error', () => {
      socket.destroy()
      resolve({ status: 0, resumed: false })
    })
    socket.once('close', () => {
      resolve({ status: Number(reply.slice(9, 12)) || 0, resumed })
    })
  })
}

async function newConnections(resume: boolean): Promise<LoadResult> {
  const deadline = performance.now() + seconds * 1000
  const latencies: number[] = []
  const statuses: Record<string, number> = {}
  let index = 0
  let resumed = 0

  async function loop(): Promise<void> {
    let session: Buffer | undefined
    while (performance.now() < deadline) {
      const started = performance.now()
      const outcome = await oneLogin(index++, resume ? session : undefined, (next) => {
        session = next
      })
      latencies.push(performance.now() - started)
      statuses[outcome.status] = (statuses[outcome.status] ?? 0) + 1
      if (outcome.resumed) {
        resumed++
      }
    }
  }

  const started = performance.now()
  await Promise.all(Array.from({ length: connections }, loop))
  const elapsedSeconds = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)

  return {
    requests: latencies.length,
    statuses,
    ratePerSecond: latencies.length / elapsedSeconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    resumedShare: latencies.length === 0 ? 0 : resumed / latencies.length,
  }
}

const result =
  mode === 'keepalive' ? await keepAlive() : await newConnections(handshake === 'resumed')
process.stdout.write(`${JSON.stringify(result)}\n`)
