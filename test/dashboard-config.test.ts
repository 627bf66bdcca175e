import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConfigError, parseConfig } from '../src/config.js'

test('plan limits and session timeouts have defaults', () => {
  const config = parseConfig([], {})

  assert.equal(config.standardPlanDevices, 100)
  assert.equal(config.enterprisePlanDevices, 1000)
  assert.equal(config.dashboardIdleMinutes, 30)
  assert.equal(config.dashboardSessionMaxHours, 12)
})

test('plan limits come from flags and environment', () => {
  const config = parseConfig(['--enterprise-plan-devices', '5000'], {
    STANDARD_PLAN_DEVICES: '250',
  })

  assert.equal(config.standardPlanDevices, 250)
  assert.equal(config.enterprisePlanDevices, 5000)
})

test('Enterprise limit not above Standard is rejected', () => {
  assert.throws(
    () => parseConfig([], { STANDARD_PLAN_DEVICES: '1000', ENTERPRISE_PLAN_DEVICES: '1000' }),
    (error: unknown) =>
      error instanceof ConfigError &&
      /must be larger than STANDARD_PLAN_DEVICES/.test(error.message),
  )
})

test('idle timeout of zero minutes is rejected', () => {
  assert.throws(
    () => parseConfig([], { DASHBOARD_IDLE_MINUTES: '0' }),
    (error: unknown) =>
      error instanceof ConfigError && /DASHBOARD_IDLE_MINUTES/.test(error.message),
  )
})
