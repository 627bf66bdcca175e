import { join } from 'node:path'
import Database from 'better-sqlite3'
import {
  keepAliveAgent,
  listAllLogins,
  requestJson,
  type ServerChild,
  startServerChild,
} from './server-child.js'

export interface CrashTestOptions {
  /** Folder for the certificates and the database; it must exist and is reused across rounds. */
  dir: string
  rounds: number
  /** Concurrent keep-alive clients, each sending one login after another. */
  clients: number
  /** The SIGKILL comes at a random moment between these two, in ms after the load starts. */
  minKillMs: number
  maxKillMs: number
  /** SQLite's synchronous mode for the server; FULL unless set. */
  synchronous?: 'FULL' | 'NORMAL' | 'EXTRA'
  onRound?: (result: CrashRoundResult) => void
}

export interface CrashRoundResult {
  round: number
  killedAfterMs: number
  /** Logins that got a 2xx in this round. */
  acknowledged: number
  /** Requests in flight when the server died: no reply, so the client does not know. */
  unanswered: number
  /** Unanswered logins that were stored anyway: committed just before the kill. */
  storedWithoutReply: number
  /** Acknowledged logins of any round so far that the restarted server does not return. */
  lost: string[]
  /** Stored logins that no client ever sent, which would mean corruption. */
  unknown: string[]
  /** Accounts or devices whose counters differ from the stored logins. */
  miscounted: string[]
  integrity: string
}

const INGEST_TOKEN = 'crash-test-ingest-token-0123456789abcdef'
const READ_TOKEN = 'crash-test-read-token-0123456789abcdefgh'
const ACCOUNTS = ['crash-a', 'crash-b', 'crash-c']

/** Identifies a login; the instant is compared in ms because the server may drop trailing zeros. */
function keyOf(login: { account_id: string; user_id: string; timestamp: string }): string {
  return `${login.account_id}/${login.user_id}/${Date.parse(login.timestamp)}`
}

/**
 * Runs the crash-consistency test: per round, concurrent clients send unique
 * logins, the server is killed with SIGKILL at a random moment and started
 * again on the same files, and the stored data is checked against what was
 * acknowledged. The database only grows, so each round also rechecks every
 * earlier round.
 */
export async function runCrashTest(options: CrashTestOptions): Promise<CrashRoundResult[]> {
  const env = {
    INGEST_TOKENS: INGEST_TOKEN,
    READ_TOKENS: READ_TOKEN,
    SQLITE_SYNCHRONOUS: options.synchronous ?? 'FULL',
  }
  const acknowledged = new Set<string>()
  const sent = new Set<string>()
  const results: CrashRoundResult[] = []
  let server = await startServerChild(options.dir, env)

  try {
    for (let round = 1; round <= options.rounds; round++) {
      const killedAfterMs = Math.round(
        options.minKillMs + Math.random() * (options.maxKillMs - options.minKillMs),
      )
      const unanswered = await loadUntilKilled(server, options.clients, round, killedAfterMs, {
        acknowledged,
        sent,
      })
      const roundAcknowledged = [...acknowledged].filter((key) => key.includes(`/r${round}-`))

      server = await startServerChild(options.dir, env)
      const result = await verify(server, options.dir, { acknowledged, sent, unanswered })
      results.push({
        round,
        killedAfterMs,
        acknowledged: roundAcknowledged.length,
        unanswered: unanswered.length,
        ...result,
      })
      options.onRound?.(results[results.length - 1] as CrashRoundResult)
    }
  } finally {
    await server.stop('SIGKILL')
  }

  return results
}

/** Drives the clients until the server is killed; returns the logins left without a reply. */
async function loadUntilKilled(
  server: ServerChild,
  clients: number,
  round: number,
  killAfterMs: number,
  state: { acknowledged: Set<string>; sent: Set<string> },
): Promise<string[]> {
  const inFlight = new Set<string>()
  let killed = false
  let sequence = 0
  const agents = Array.from({ length: clients }, () => keepAliveAgent(server, 1))

  const client = async (index: number) => {
    while (!killed) {
      sequence++
      const login = {
        account_id: ACCOUNTS[sequence % ACCOUNTS.length] as string,
        user_id: `r${round}-c${index}-${sequence % 7}`,
        timestamp: new Date(Date.UTC(2024, 0, 1) + round * 86_400_000 + sequence).toISOString(),
      }
      const key = keyOf(login)
      state.sent.add(key)
      inFlight.add(key)
      try {
        const reply = await requestJson(
          server,
          agents[index] as ReturnType<typeof keepAliveAgent>,
          'POST',
          '/metrics',
          INGEST_TOKEN,
          login,
        )
        inFlight.delete(key)
        if (reply.status >= 200 && reply.status < 300) {
          state.acknowledged.add(key)
        } else if (reply.status !== 503) {
          throw new Error(`unexpected ${reply.status}: ${JSON.stringify(reply.body)}`)
        }
      } catch (error) {
        if (!killed) {
          throw error
        }
      }
    }
  }

  const running = Array.from({ length: clients }, (_, index) => client(index))
  await new Promise((resolve) => setTimeout(resolve, killAfterMs))
  killed = true
  await server.stop('SIGKILL')
  await Promise.all(running)
  for (const agent of agents) {
    agent.destroy()
  }

  return [...inFlight]
}

async function verify(
  server: ServerChild,
  dir: string,
  state: { acknowledged: Set<string>; sent: Set<string>; unanswered: string[] },
): Promise<Omit<CrashRoundResult, 'round' | 'killedAfterMs' | 'acknowledged' | 'unanswered'>> {
  const agent = keepAliveAgent(server, 4)
  try {
    const stored = await listAllLogins(server, agent, READ_TOKEN)
    const storedKeys = new Set(stored.map(keyOf))
    const lost = [...state.acknowledged].filter((key) => !storedKeys.has(key))
    const unknown = [...storedKeys].filter((key) => !state.sent.has(key))

    // The counters are kept in the same transaction as the logins; recount them.
    const miscounted: string[] = []
    for (const accountId of ACCOUNTS) {
      const rows = stored.filter((login) => login.account_id === accountId)
      const users = new Map<string, number>()
      for (const row of rows) {
        users.set(row.user_id, (users.get(row.user_id) ?? 0) + 1)
      }
      const summary = await requestJson(server, agent, 'GET', `/accounts/${accountId}`, READ_TOKEN)
      const logins = summary.status === 404 ? 0 : summary.body.logins
      const devices = summary.status === 404 ? 0 : summary.body.devices
      if (logins !== rows.length || devices !== users.size) {
        miscounted.push(
          `${accountId}: counters ${logins} logins, ${devices} devices; stored ${rows.length} logins, ${users.size} devices`,
        )
      }
      if (summary.status === 404) {
        continue
      }

      let cursor: string | null = null
      do {
        const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
        const page = await requestJson(
          server,
          agent,
          'GET',
          `/accounts/${accountId}/users?limit=1000${query}`,
          READ_TOKEN,
        )
        for (const device of page.body.users as Array<{ user_id: string; logins: number }>) {
          if (device.logins !== users.get(device.user_id)) {
            miscounted.push(
              `${accountId}/${device.user_id}: counter ${device.logins}, stored ${users.get(device.user_id) ?? 0}`,
            )
          }
        }
        cursor = page.body.next_cursor
      } while (cursor !== null)
    }

    // A second connection may check the file while the server runs: WAL gives it a consistent snapshot.
    const db = new Database(join(dir, 'data', 'metrics.db'), { readonly: true })
    let integrity: string
    try {
      integrity = String(db.pragma('integrity_check', { simple: true }))
    } finally {
      db.close()
    }

    return {
      storedWithoutReply: state.unanswered.filter((key) => storedKeys.has(key)).length,
      lost,
      unknown,
      miscounted,
      integrity,
    }
  } finally {
    agent.destroy()
  }
}
