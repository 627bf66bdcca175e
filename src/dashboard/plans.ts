import type Database from 'better-sqlite3'

export type PlanId = 'standard' | 'enterprise'

export const PLAN_IDS: readonly PlanId[] = ['standard', 'enterprise']

/** Every account starts on this plan, and stays on it until someone changes it. */
export const DEFAULT_PLAN: PlanId = 'standard'

export interface Plan {
  id: PlanId
  name: string
  /** Devices (distinct users) the plan covers; logins beyond it are still stored. */
  deviceLimit: number
}

export interface PlanLimits {
  standardPlanDevices: number
  enterprisePlanDevices: number
}

/** The plan catalogue, with limits from the configuration. */
export function createPlanCatalog(limits: PlanLimits): Record<PlanId, Plan> {
  return {
    standard: { id: 'standard', name: 'Standard', deviceLimit: limits.standardPlanDevices },
    enterprise: { id: 'enterprise', name: 'Enterprise', deviceLimit: limits.enterprisePlanDevices },
  }
}

export interface PlanChange {
  accountId: string
  fromPlan: PlanId
  toPlan: PlanId
  changedBy: string
  /** ISO 8601, UTC. */
  changedAt: string
}

export interface PlanStore {
  planOf(accountId: string): PlanId
  /** Puts an account on a plan and records who did it and when, in one transaction. */
  change(accountId: string, toPlan: PlanId, changedBy: string): PlanChange
  /** The account's plan changes, newest first. */
  history(accountId: string, limit: number): PlanChange[]
}

interface ChangeRow {
  account_id: string
  from_plan: PlanId
  to_plan: PlanId
  changed_by: string
  changed_at: string
}

/** Creates the plan store over the shared, migrated database. */
export function createPlanStore(db: Database.Database): PlanStore {
  const selectPlan = db.prepare<[string], { plan: PlanId }>(
    'SELECT plan FROM account_plans WHERE account_id = ?',
  )
  const upsertPlan = db.prepare<[string, PlanId, string, string]>(`
    INSERT INTO account_plans (account_id, plan, changed_at, changed_by) VALUES (?, ?, ?, ?)
    ON CONFLICT (account_id) DO UPDATE
    SET plan = excluded.plan, changed_at = excluded.changed_at, changed_by = excluded.changed_by
  `)
  const insertChange = db.prepare<[string, PlanId, PlanId, string, string]>(`
    INSERT INTO plan_changes (account_id, from_plan, to_plan, changed_by, changed_at)
    VALUES (?, ?, ?, ?, ?)
  `)
  const selectHistory = db.prepare<[string, number], ChangeRow>(`
    SELECT account_id, from_plan, to_plan, changed_by, changed_at FROM plan_changes
    WHERE account_id = ? ORDER BY id DESC LIMIT ?
  `)

  const planOf = (accountId: string): PlanId => selectPlan.get(accountId)?.plan ?? DEFAULT_PLAN

  const applyChange = db.transaction(
    (accountId: string, toPlan: PlanId, changedBy: string): PlanChange => {
      const fromPlan = planOf(accountId)
      const changedAt = new Date().toISOString()
      upsertPlan.run(accountId, toPlan, changedAt, changedBy)
      insertChange.run(accountId, fromPlan, toPlan, changedBy, changedAt)

      return { accountId, fromPlan, toPlan, changedBy, changedAt }
    },
  )

  return {
    planOf,

    change(accountId, toPlan, changedBy) {
      return applyChange.immediate(accountId, toPlan, changedBy)
    },

    history(accountId, limit) {
      return selectHistory.all(accountId, limit).map((row) => ({
        accountId: row.account_id,
        fromPlan: row.from_plan,
        toPlan: row.to_plan,
        changedBy: row.changed_by,
        changedAt: row.changed_at,
      }))
    },
  }
}
