import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Login } from '../../src/login.js'
import { createSqliteStore, openDatabase } from '../../src/sqlite-store.js'
import type { Store } from '../../src/store.js'

// The storage measures, taken through the store module without HTTP:
// bytes on disk per stored login and query latency at large sizes.

export interface StorageOptions {
  dir: string
  /** Logins at which the bytes on disk are measured. */
  sizeAt: number
  /** Logins at which the query latencies are measured. */
  queriesAt: number
  accounts: number
  usersPerAccount: number
  /** Queries of each kind timed at `queriesAt`. */
  samples: number
}

export interface LatencyStats {
  p50Ms: number
  p95Ms: number
}

export interface StorageResult {
  accounts: number
  devices: number
  sizeAt: number
  bytesPerLogin: number
  /** Bytes per login of each table and index, from SQLite's dbstat table. */
  bytesPerLoginByObject: Record<string, number>
  queriesAt: number
  loadSeconds: number
  loadRatePerSecond: number
  queries: Record<string, LatencyStats>
}

const BATCH = 50_000
// 2019-03-03T18:02:30Z in nanoseconds.
const BASE_NS = 1_551_636_150_000_000_000n

function uuidOf(prefix: number, value: number): string {
  return `${prefix.toString(16).padStart(8, '0')}-0000-4000-8000-${value.toString(16).padStart(12, '0')}`
}

/** A small deterministic generator, so every run stores the same logins. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

function bytesOnDisk(path: string): number {
  let total = 0
  for (const suffix of ['', '-wal']) {
    if (existsSync(path + suffix)) {
      total += statSync(path + suffix).size
    }
  }

  return total
}

function stats(samples: number[]): LatencyStats {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (share: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * share))] ?? 0

  return { p50Ms: round(at(0.5)), p95Ms: round(at(0.95)) }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000
}

function time(run: () => unknown): number {
  const started = performance.now()
  run()
  return performance.now() - started
}

/**
 * Loads logins in time order from random devices through Store#commitBatch
 * in batches of 50,000 with synchronous=NORMAL (the load phase only; the
 * server default is FULL), measures the file size at `sizeAt` logins after a
 * TRUNCATE checkpoint, then the query latencies at `queriesAt`.
 */
export function measureStorage(options: StorageOptions): StorageResult {
  const path = join(options.dir, 'storage.db')
  const db = openDatabase({ path, synchronous: 'NORMAL' })
  // A 256 MiB page cache keeps the account index, which every batch touches
  // at random places, in memory during the load; the server keeps the default.
  db.pragma('cache_size = -262144')
  const store = createSqliteStore(db)
  const random = createRandom(42)
  const devices = options.accounts * options.usersPerAccount

  let loaded = 0
  let ts = BASE_NS
  let bytesPerLogin = 0
  let bytesPerLoginByObject: Record<string, number> = {}
  const started = performance.now()
  while (loaded < options.queriesAt) {
    const size = Math.min(BATCH, options.queriesAt - loaded)
    const batch: Login[] = new Array(size)
    for (let index = 0; index < size; index++) {
      const device = Math.floor(random() * devices)
      const account = Math.floor(device / options.usersPerAccount)
      // Logins arrive about every 100 µs, each with a random nanosecond part.
      ts += 50_000n + BigInt(Math.floor(random() * 100_000))
      batch[index] = {
        accountId: uuidOf(0xacc, account),
        userId: uuidOf(0xd0, device),
        timestampNs: ts,
      }
    }
    store.commitBatch(batch)
    loaded += size

    if (loaded === options.sizeAt) {
      store.checkpoint()
      bytesPerLogin = bytesOnDisk(path) / loaded
      bytesPerLoginByObject = sizeByObject(db, loaded)
    }
  }
  const loadSeconds = (performance.now() - started) / 1000
  store.checkpoint()

  const queries = timeQueries(store, options, random, ts)
  store.close()

  return {
    accounts: options.accounts,
    devices,
    sizeAt: options.sizeAt,
    bytesPerLogin: round(bytesPerLogin),
    bytesPerLoginByObject,
    queriesAt: options.queriesAt,
    loadSeconds: round(loadSeconds),
    loadRatePerSecond: Math.round(options.queriesAt / loadSeconds),
    queries,
  }
}

function sizeByObject(db: ReturnType<typeof openDatabase>, logins: number): Record<string, number> {
  try {
    const rows = db
      .prepare('SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC')
      .all() as Array<{ name: string; bytes: number }>

    return Object.fromEntries(rows.map((row) => [row.name, round(row.bytes / logins)]))
  } catch {
    // This SQLite build lacks the dbstat table.
    return {}
  }
}

function timeQueries(
  store: Store,
  options: StorageOptions,
  random: () => number,
  lastNs: bigint,
): Record<string, LatencyStats> {
  const devices = options.accounts * options.usersPerAccount
  const samples: Record<string, number[]> = {
    accountSummary: [],
    deviceListPage: [],
    accountLoginsPage: [],
    accountLoginsSecondPage: [],
    deviceLoginsPage: [],
    allLoginsPage: [],
    allLoginsLastHourPage: [],
  }
  const push = (name: string, ms: number) => samples[name]?.push(ms)

  for (let sample = 0; sample < options.samples; sample++) {
    const device = Math.floor(random() * devices)
    const accountId = uuidOf(0xacc, Math.floor(device / options.usersPerAccount))
    const userId = uuidOf(0xd0, device)

    push(
      'accountSummary',
      time(() => store.getAccount(accountId)),
    )
    push(
      'deviceListPage',
      time(() => store.listDevices(accountId, 100)),
    )
    let next: ReturnType<Store['listLogins']>['next']
    push(
      'accountLoginsPage',
      time(() => {
        next = store.listLogins({ accountId, limit: 100 }).next
      }),
    )
    push(
      'accountLoginsSecondPage',
      time(() => store.listLogins({ accountId, limit: 100, after: next })),
    )
    push(
      'deviceLoginsPage',
      time(() => store.listLogins({ accountId, userId, limit: 100 })),
    )
    push(
      'allLoginsPage',
      time(() => store.listLogins({ limit: 100 })),
    )
    push(
      'allLoginsLastHourPage',
      time(() => store.listLogins({ limit: 100, sinceNs: lastNs - 3_600_000_000_000n })),
    )
  }

  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, stats(values)]))
}
