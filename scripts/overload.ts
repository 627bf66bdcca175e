import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  keepAliveAgent,
  listAllLogins,
  newConnectionAgent,
  requestJson,
  type ServerChild,
  startServerChild,
} from './harness/server-child.js'

// Measures the sustainable ingest rate, then offers the server ten times
// that rate for a while. It reports how the server sheds the excess (replies
// by status, Retry-After values, resident memory over time) and whether
// every acknowledged login was stored.
const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '60' },
    'calibration-seconds': { type: 'string', default: '5' },
    factor: { type: 'string', default: '10' },
    connections: { type: 'string', default: '1000' },
    'queue-max': { type: 'string', default: '500' },
    synchronous: { type: 'string', default: 'FULL' },
    // 1 makes every login its own fsync, like a slow disk, so the write queue becomes the bottleneck.
    'batch-size': { type: 'string', default: '1000' },
    // Each login on a new TLS connection, as devices that wake up, report and sleep do.
    'new-connections': { type: 'boolean', default: false },
    // For example --max-old-space-size=64, to tell a leak from V8 collecting garbage late.
    'server-node-options': { type: 'string', default: '' },
  },
})
const durationMs = Number(values.duration) * 1000
const calibrationMs = Number(values['calibration-seconds']) * 1000
const factor = Number(values.factor)
const connections = Number(values.connections)

const INGEST_TOKEN = 'overload-ingest-token-0123456789abcdefghij'
const READ_TOKEN = 'overload-read-token-0123456789abcdefghijkl'

/** Reads a field of /proc/<pid>/status in KiB (Linux only). */
function memoryKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  if (!existsSync(`/proc/${pid}/status`)) {
    throw new Error(`the server (pid ${pid}) is gone: ${server.recentOutput().slice(-2000)}`)
  }
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
}

/** Reads the scrape URL from the server's 'metrics listening' log line. */
async function findMetricsUrl(logPath: string): Promise<string> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const line = readFileSync(logPath, 'utf8')
      .split('\n')
      .find((entry) => entry.includes('"msg":"metrics listening"'))
    if (line !== undefined) {
      return JSON.parse(line).url
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`the server logged no metrics URL in ${logPath}`)
}

/**
 * V8 heap and external memory of the server in bytes, from its Prometheus
 * metrics. A scrape that fails under load gives NaN for that second.
 */
async function heapBytes(
  url: string,
): Promise<{ heapUsed: number; heapTotal: number; external: number }> {
  const text = await fetch(url)
    .then((response) => response.text())
    .catch(() => '')
  const read = (name: string) =>
    Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? Number.NaN)

  return {
    heapUsed: read('nodejs_heap_size_used_bytes'),
    heapTotal: read('nodejs_heap_size_total_bytes'),
    external: read('nodejs_external_memory_bytes'),
  }
}

let sequence = 0
function nextLogin() {
  sequence++
  return {
    account_id: `overload-${sequence % 100}`,
    user_id: `device-${sequence}`,
    timestamp: new Date(Date.UTC(2024, 0, 1) + sequence).toISOString(),
  }
}

/** Sends logins back to back on `clients` connections for `ms` and returns the 2xx rate per second. */
async function calibrate(server: ServerChild, clients: number, ms: number): Promise<number> {
  const agent = keepAliveAgent(server, clients)
  const until = Date.now() + ms
  let acknowledged = 0
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < until) {
        const reply = await requestJson(
          server,
          agent,
          'POST',
          '/metrics',
          INGEST_TOKEN,
          nextLogin(),
        )
        if (reply.status === 201) {
          acknowledged++
        }
      }
    }),
  )
  agent.destroy()

  return acknowledged / (ms / 1000)
}

const dir = mkdtempSync(join(tmpdir(), 'iotm-overload-'))
const server = await startServerChild(dir, {
  INGEST_TOKENS: INGEST_TOKEN,
  READ_TOKENS: READ_TOKEN,
  QUEUE_MAX: String(values['queue-max']),
  MAX_CONNECTIONS: String(connections + 100),
  SQLITE_SYNCHRONOUS: String(values.synchronous),
  BATCH_SIZE: String(values['batch-size']),
  NODE_OPTIONS: String(values['server-node-options']),
  METRICS_PORT: '0',
}).catch(async (error: unknown) => {
  rmSync(dir, { recursive: true, force: true })
  throw error
})
const pid = server.child.pid as number

try {
  const metricsUrl = await findMetricsUrl(join(dir, 'server.log'))
  const sustainable = await calibrate(server, 64, calibrationMs)
  const target = sustainable * factor
  const baselineKiB = memoryKiB(pid, 'VmRSS')
  process.stdout.write(
    `batch size ${values['batch-size']}, queue max ${values['queue-max']}, synchronous=${values.synchronous}, ` +
      `server NODE_OPTIONS ${JSON.stringify(values['server-node-options'])}\n` +
      `sustainable rate ${Math.round(sustainable)} logins/s (64 clients, ${calibrationMs / 1000} s); ` +
      `offering ${Math.round(target)}/s for ${durationMs / 1000} s on ${connections} ` +
      `${values['new-connections'] ? 'new connections at a time' : 'keep-alive connections'}; ` +
      `server RSS ${Math.round(baselineKiB / 1024)} MiB\n`,
  )

  // Open loop: every tick sends its share of the target rate whatever the
  // replies, on as many connections as are free, as devices that do not slow
  // down would.
  const agent = values['new-connections']
    ? newConnectionAgent(server, connections)
    : keepAliveAgent(server, connections)
  const acknowledged = new Set<string>()
  const statuses = new Map<string, number>()
  const retryAfter = new Map<string, number>()
  let inFlight = 0
  let notSent = 0
  let offered = 0
  const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1)
  const rssSamples: number[] = []
  const heapSamples: Promise<{ heapUsed: number; heapTotal: number; external: number }>[] = []
  const pending = new Set<Promise<void>>()
  const tickMs = 10
  const started = Date.now()
  let nextSample = started + 1000

  while (Date.now() - started < durationMs) {
    const due = Math.floor((target * (Date.now() - started)) / 1000) - offered
    for (let i = 0; i < due; i++) {
      offered++
      if (inFlight >= connections) {
        notSent++
        continue
      }
      inFlight++
      const login = nextLogin()
      const sent = requestJson(server, agent, 'POST', '/metrics', INGEST_TOKEN, login).then(
        (reply) => {
          count(statuses, String(reply.status))
          if (reply.status === 201) {
            acknowledged.add(`${login.account_id}/${login.user_id}`)
          }
          if (reply.status === 503) {
            count(retryAfter, String(reply.headers['retry-after']))
          }
        },
        (error: NodeJS.ErrnoException) => {
          count(statuses, error.code ?? 'error')
        },
      )
      const tracked = sent.finally(() => {
        inFlight--
        pending.delete(tracked)
      })
      pending.add(tracked)
    }
    if (Date.now() >= nextSample) {
      rssSamples.push(memoryKiB(pid, 'VmRSS'))
      heapSamples.push(heapBytes(metricsUrl))
      nextSample += 1000
    }
    await new Promise((resolve) => setTimeout(resolve, tickMs))
  }
  await Promise.all(pending)
  agent.destroy()
  const peakKiB = memoryKiB(pid, 'VmHWM')

  const reader = keepAliveAgent(server, 1)
  const stored = new Set(
    (await listAllLogins(server, reader, READ_TOKEN)).map(
      (login) => `${login.account_id}/${login.user_id}`,
    ),
  )
  reader.destroy()
  const missing = [...acknowledged].filter((key) => !stored.has(key))

  const mib = (kib: number) => `${Math.round(kib / 1024)} MiB`
  const heaps = await Promise.all(heapSamples)
  const samplesAt = [0.1, 0.25, 0.5, 0.75, 1].map((share) =>
    Math.max(1, Math.round(rssSamples.length * share)),
  )
  const timeline = samplesAt
    .map((second) => `${second} s ${mib(rssSamples[second - 1] ?? Number.NaN)}`)
    .join(', ')
  const heapTimeline = samplesAt
    .map((second) => {
      const heap = heaps[second - 1]
      return `${second} s ${mib((heap?.heapUsed ?? Number.NaN) / 1024)} + ${mib((heap?.external ?? Number.NaN) / 1024)}`
    })
    .join(', ')
  process.stdout.write(
    `offered ${offered} logins (${notSent} not sent: all ${connections} connections busy)\n` +
      `replies by status: ${JSON.stringify(Object.fromEntries(statuses))}\n` +
      `Retry-After on 503: ${JSON.stringify(Object.fromEntries(retryAfter))}\n` +
      `acknowledged ${acknowledged.size}, stored ${acknowledged.size - missing.length}, missing ${missing.length}\n` +
      `server RSS: baseline ${mib(baselineKiB)}; ${timeline}; peak (VmHWM) ${mib(peakKiB)}\n` +
      `server V8 heap used + external: ${heapTimeline}\n`,
  )
  // RSS minus the V8 heap is the memory outside it (TLS, SQLite, buffers):
  // a leak there shows as a rising last column.
  const series = heaps
    .map((heap, index) => ({ heap, second: index + 1, rssKiB: rssSamples[index] ?? Number.NaN }))
    .filter(({ second }) => second % 5 === 0)
    .map(
      ({ heap, second, rssKiB }) =>
        `${second}:${mib(rssKiB)}/${mib(heap.heapUsed / 1024)}/${mib(heap.heapTotal / 1024)}/${mib(rssKiB - heap.heapTotal / 1024)}`,
    )
  process.stdout.write(
    `every 5 s, second:RSS/heap used/heap total/RSS outside the heap: ${series.length === 0 ? 'none, the run was shorter than 5 s' : `${series.join(' ').replaceAll(' MiB', '')} (MiB)`}\n`,
  )
  process.exitCode = missing.length === 0 ? 0 : 1
} finally {
  await server.stop('SIGTERM')
  rmSync(dir, { recursive: true, force: true })
}
