import type Database from 'better-sqlite3'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { createAccountView } from './account-view.js'
import { createAdminUserStore } from './admin-users.js'
import { createLiveUpdates } from './live-updates.js'
import { createPlanCatalog, createPlanStore, type PlanLimits } from './plans.js'
import { registerDashboardRoutes } from './routes.js'
import { createSessionStore } from './sessions.js'
import { createSignInThrottle, type SignInThrottleOptions } from './signin-throttle.js'
import { loadStaticAssets } from './static-assets.js'

export interface DashboardOptions extends PlanLimits {
  /** The server's database, already migrated; the dashboard keeps its tables there. */
  db: Database.Database
  logger: Logger
  idleMinutes: number
  sessionMaxHours: number
  /** Folder of the built front end; dist/web by default. */
  assetDir?: string
  throttle?: SignInThrottleOptions
  /** The clock, replaceable in tests; Unix milliseconds. */
  now?: () => number
  /** How long live updates collect changes before sending, in ms. */
  liveFlushIntervalMs?: number
}

/** The admin dashboard, ready to be registered on the app. */
export interface Dashboard {
  /** Adds the dashboard routes under /dashboard; ending the app ends its event streams. */
  register(app: FastifyInstance): Promise<void>
}

// Expired sessions are deleted at start and then this often.
const SESSION_PURGE_INTERVAL_MS = 60 * 60_000

export function createDashboard(options: DashboardOptions): Dashboard {
  const { db, logger } = options
  const now = options.now ?? Date.now

  return {
    async register(app) {
      const plans = createPlanCatalog(options)
      const planStore = createPlanStore(db)
      const view = createAccountView(db, plans, planStore)
      const sessions = createSessionStore(db, {
        idleTimeoutMs: options.idleMinutes * 60_000,
        absoluteTimeoutMs: options.sessionMaxHours * 3_600_000,
        now,
      })
      const live = createLiveUpdates({
        readCard: (accountId) => view.card(accountId),
        logger,
        ...(options.liveFlushIntervalMs === undefined
          ? {}
          : { flushIntervalMs: options.liveFlushIntervalMs }),
      })
      const assets = loadStaticAssets(options.assetDir)
      if (!assets.has('index.html')) {
        logger.warn(
          'the dashboard front end is not built; /dashboard/ responds 503 until npm run build',
        )
      }

      sessions.purgeExpired()
      const purge = setInterval(() => sessions.purgeExpired(), SESSION_PURGE_INTERVAL_MS)
      purge.unref()
      // Open event streams would keep the server from closing.
      app.addHook('preClose', async () => {
        clearInterval(purge)
        live.close()
      })

      app.decorateRequest('dashboardSession', undefined)
      await app.register(
        async (scope) => {
          registerDashboardRoutes(scope, {
            sessions,
            admins: createAdminUserStore(db),
            throttle: createSignInThrottle(options.throttle),
            plans,
            planStore,
            view,
            live,
            assets,
            idleTimeoutSeconds: options.idleMinutes * 60,
            logger,
            now,
          })
        },
        { prefix: '/dashboard' },
      )
    },
  }
}
