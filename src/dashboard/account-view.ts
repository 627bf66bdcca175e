import type Database from 'better-sqlite3'
import { formatTimestamp } from '../timestamp.js'
import { DEFAULT_PLAN, type Plan, type PlanId, type PlanStore } from './plans.js'

/** Summary of an account, as the dashboard shows it in the list and at the top of its page. */
export interface AccountCard {
  account_id: string
  plan: PlanId
  plan_name: string
  device_limit: number
  devices: number
  seats_available: number
  /** Devices beyond the plan's limit; their logins are stored all the same. */
  overage: number
  at_limit: boolean
  over_limit: boolean
  logins: number
  last_login: string | null
}

export interface RecentDevice {
  user_id: string
  logins: number
  first_login: string
  last_login: string
}

export interface AccountDetail extends AccountCard {
  /** Logins per hour, oldest first; the last entry is the current hour. */
  logins_per_hour: { first_hour: string; counts: number[] }
  recent_devices: RecentDevice[]
  plan_changes: { from_plan: PlanId; to_plan: PlanId; changed_by: string; changed_at: string }[]
}

export interface AccountSearchResult {
  accounts: AccountCard[]
  /** True when more accounts matched than were returned. */
  truncated: boolean
}

export interface AccountView {
  search(query: string, limit: number): AccountSearchResult
  card(accountId: string): AccountCard | undefined
  detail(accountId: string, now: Date): AccountDetail | undefined
}

/** Hours of history in the chart: the last seven days. */
export const CHART_HOURS = 7 * 24
const RECENT_DEVICES = 10
const PLAN_HISTORY = 10
const NS_PER_HOUR = 3_600_000_000_000n

interface AccountRow {
  id: number
  external_id: string
  devices: number
  logins: number
  last_login: bigint | null
  plan: PlanId | null
}

interface DeviceRow {
  external_id: string
  logins: number
  first_login: bigint
  last_login: bigint
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (character) => `\\${character}`)
}

/**
 * Creates the dashboard's read model over the shared database: the login
 * store's account and device counters joined with the plans.
 */
export function createAccountView(
  db: Database.Database,
  plans: Record<PlanId, Plan>,
  planStore: PlanStore,
): AccountView {
  const accountColumns = `
    a.id, a.external_id, a.devices, a.logins, a.last_login, p.plan
    FROM accounts a LEFT JOIN account_plans p ON p.account_id = a.external_id
  `
  const selectAccount = db.prepare<[string], AccountRow>(
    `SELECT ${accountColumns} WHERE a.external_id = ?`,
  )
  const searchAccounts = db.prepare<[string, number], AccountRow>(
    `SELECT ${accountColumns} WHERE a.external_id LIKE ? ESCAPE '\\' ORDER BY a.external_id LIMIT ?`,
  )
  const selectHourly = db.prepare<[number, bigint, bigint], { hour: bigint; logins: number }>(`
    SELECT ts / ${NS_PER_HOUR} AS hour, count(*) AS logins FROM logins
    WHERE account_ref = ? AND ts >= ? AND ts < ? GROUP BY hour
  `)
  const selectRecentDevices = db.prepare<[number, number], DeviceRow>(`
    SELECT external_id, logins, first_login, last_login FROM devices
    WHERE account_ref = ? AND logins > 0 ORDER BY last_login DESC, external_id LIMIT ?
  `)
  for (const statement of [selectAccount, searchAccounts, selectHourly, selectRecentDevices]) {
    statement.safeIntegers(true)
  }

  function toCard(row: AccountRow): AccountCard {
    const plan = plans[row.plan ?? DEFAULT_PLAN]
    const devices = Number(row.devices)

    return {
      account_id: row.external_id,
      plan: plan.id,
      plan_name: plan.name,
      device_limit: plan.deviceLimit,
      devices,
      seats_available: Math.max(0, plan.deviceLimit - devices),
      overage: Math.max(0, devices - plan.deviceLimit),
      at_limit: devices >= plan.deviceLimit,
      over_limit: devices > plan.deviceLimit,
      logins: Number(row.logins),
      last_login: row.last_login === null ? null : formatTimestamp(row.last_login),
    }
  }

  function loginsPerHour(accountRef: number, now: Date): AccountDetail['logins_per_hour'] {
    const currentHour = BigInt(Math.floor(now.getTime() / 3_600_000))
    const firstHour = currentHour - BigInt(CHART_HOURS - 1)
    const counts = new Array<number>(CHART_HOURS).fill(0)
    const rows = selectHourly.all(
      accountRef,
      firstHour * NS_PER_HOUR,
      (currentHour + 1n) * NS_PER_HOUR,
    )
    for (const row of rows) {
      counts[Number(row.hour - firstHour)] = Number(row.logins)
    }

    return { first_hour: formatTimestamp(firstHour * NS_PER_HOUR), counts }
  }

  return {
    search(query, limit) {
      const rows = searchAccounts.all(`%${escapeLike(query)}%`, limit + 1)

      return { accounts: rows.slice(0, limit).map(toCard), truncated: rows.length > limit }
    },

    card(accountId) {
      const row = selectAccount.get(accountId)
      return row === undefined ? undefined : toCard(row)
    },

    detail(accountId, now) {
      const row = selectAccount.get(accountId)
      if (row === undefined) {
        return undefined
      }

      const accountRef = Number(row.id)
      return {
        ...toCard(row),
        logins_per_hour: loginsPerHour(accountRef, now),
        recent_devices: selectRecentDevices.all(accountRef, RECENT_DEVICES).map((device) => ({
          user_id: device.external_id,
          logins: Number(device.logins),
          first_login: formatTimestamp(device.first_login),
          last_login: formatTimestamp(device.last_login),
        })),
        plan_changes: planStore.history(accountId, PLAN_HISTORY).map((change) => ({
          from_plan: change.fromPlan,
          to_plan: change.toPlan,
          changed_by: change.changedBy,
          changed_at: change.changedAt,
        })),
      }
    },
  }
}
