import { subscribe } from 'node:diagnostics_channel'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import type { LoginsExpiredEvent } from '../src/events.js'
import type { Login } from '../src/login.js'
import { createRetention, TARGET_CHUNK_MS } from '../src/retention.js'
import { createSqliteStore, openDatabase } from '../src/sqlite-store.js'
import { createWriteQueue } from '../src/write-queue.js'

// Measures how long ingestion waits on retention: the duration of each
// retention transaction, and the commit latency of logins sent one after
// another while retention deletes, against the same without retention.
// Usage: npm run bench:retention [-- EXPIRED_LOGINS]   (default 200,000)

const EXPIRED = Number(process.argv[2] ?? 200_000)
const DAY_NS = 86_400_000_000_000n
const NOW_NS = BigInt(Date.now()) * 1_000_000n

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0
}

function summary(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b)

  return `n=${sorted.length} p50 ${percentile(sorted, 50).toFixed(2)} ms, p99 ${percentile(sorted, 99).toFixed(2)} ms, max ${(sorted[sorted.length - 1] ?? 0).toFixed(2)} ms`
}

const dir = mkdtempSync(join(tmpdir(), 'iotm-retention-bench-'))
const logger = pino({ level: 'silent' })
try {
  const db = openDatabase({ path: join(dir, 'metrics.db') })
  const store = createSqliteStore(db)
  const queue = createWriteQueue({
    commit: (logins) => store.commitBatch(logins),
    maxBatchSize: 1000,
    batchDelayMs: 0,
    maxQueued: 10_000,
    logger,
  })

  let batch: Login[] = []
  for (let i = 0; i < EXPIRED; i++) {
    batch.push({
      accountId: `acct-${i % 100}`,
      userId: `device-${i % 10_000}`,
      timestampNs: NOW_NS - 100n * DAY_NS + BigInt(i) * 1000n,
    })
    if (batch.length === 20_000) {
      store.commitBatch(batch)
      batch = []
    }
  }
  store.commitBatch(batch)

  let sequence = 0
  /** Sends logins one at a time until `running()` turns false; returns each commit latency. */
  async function ingestWhile(running: () => boolean): Promise<number[]> {
    const latencies: number[] = []
    while (running()) {
      const started = process.hrtime.bigint()
      await queue.enqueue({
        accountId: 'acct-live',
        userId: `device-${sequence % 50}`,
        timestampNs: NOW_NS + BigInt(sequence++),
      })
      latencies.push(Number(process.hrtime.bigint() - started) / 1e6)
    }

    return latencies
  }

  const baselineEnd = Date.now() + 2000
  const baseline = await ingestWhile(() => Date.now() < baselineEnd)

  const chunkDurations: number[] = []
  subscribe('iot-metrics:logins-expired', (message) => {
    chunkDurations.push((message as LoginsExpiredEvent).durationMs)
  })
  const retention = createRetention({ db, retentionMs: 90 * 86_400_000, logger })
  let sweeping = true
  const started = Date.now()
  const sweep = retention.sweep(NOW_NS).finally(() => {
    sweeping = false
  })
  const during = await ingestWhile(() => sweeping)
  const deleted = await sweep

  process.stdout.write(
    [
      `deleted ${deleted} logins in ${chunkDurations.length} transactions (aiming at ${TARGET_CHUNK_MS} ms each) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      `retention transaction duration: ${summary(chunkDurations)}`,
      `commit latency without retention: ${summary(baseline)}`,
      `commit latency during retention:  ${summary(during)}`,
      '',
    ].join('\n'),
  )
  await queue.close()
  store.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
