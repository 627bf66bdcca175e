import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { AppError } from '../errors.js'
import { normalizeId } from '../login.js'
import { idSchema } from '../login-schema.js'
import type { AccountView } from './account-view.js'
import type { AdminUserStore } from './admin-users.js'
import type { LiveUpdates } from './live-updates.js'
import { MAX_PASSWORD_LENGTH, spendPasswordCheckTime, verifyPassword } from './passwords.js'
import { PLAN_IDS, type Plan, type PlanId, type PlanStore } from './plans.js'
import { SECURITY_HEADERS } from './security-headers.js'
import {
  clearSessionCookie,
  readCookie,
  registerSessionGuard,
  SESSION_COOKIE,
  setSessionCookie,
} from './session-guard.js'
import type { SessionStore } from './sessions.js'
import type { SignInThrottle } from './signin-throttle.js'
import type { StaticAsset } from './static-assets.js'

export interface DashboardRouteDependencies {
  sessions: SessionStore
  admins: AdminUserStore
  throttle: SignInThrottle
  plans: Record<PlanId, Plan>
  planStore: PlanStore
  view: AccountView
  live: LiveUpdates
  assets: Map<string, StaticAsset>
  idleTimeoutSeconds: number
  logger: Logger
  now: () => number
}

// Maximum accounts returned by one search; beyond it the page suggests a narrower search.
const SEARCH_LIMIT = 100

const signInBodySchema = {
  type: 'object',
  required: ['username', 'password'],
  additionalProperties: false,
  properties: {
    username: { type: 'string', minLength: 1, maxLength: 64 },
    password: { type: 'string', minLength: 1, maxLength: MAX_PASSWORD_LENGTH },
  },
} as const

const accountParamsSchema = {
  type: 'object',
  required: ['account_id'],
  additionalProperties: false,
  properties: { account_id: idSchema },
} as const

const planBodySchema = {
  type: 'object',
  required: ['plan'],
  additionalProperties: false,
  properties: { plan: { type: 'string', enum: PLAN_IDS } },
} as const

const searchQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { q: { type: 'string', maxLength: 128 } },
} as const

function accountNotFound(accountId: string): AppError {
  return new AppError(
    'IOTM_ERR_ACCOUNT_NOT_FOUND',
    `no account ${JSON.stringify(accountId)} has logged in yet`,
    { field: 'account_id' },
  )
}

/**
 * Registers the dashboard under /dashboard: the page and its assets, and the
 * JSON API behind it under /dashboard/api. Call it inside its own plugin
 * scope, so its hooks apply to these routes only.
 */
export function registerDashboardRoutes(
  app: FastifyInstance,
  deps: DashboardRouteDependencies,
): void {
  const { sessions, admins, throttle, plans, planStore, view, live, assets, logger } = deps

  registerSessionGuard(app, sessions)
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.headers(SECURITY_HEADERS)
    if (!reply.hasHeader('cache-control')) {
      reply.header('cache-control', 'no-store')
    }
    return payload
  })

  // The page and its assets.
  const sendAsset = (name: string, immutable: boolean) =>
    async function serveAsset(request: FastifyRequest, reply: FastifyReply) {
      const asset = assets.get(name)
      if (asset === undefined) {
        throw new AppError(
          'IOTM_ERR_DASHBOARD_ASSETS_MISSING',
          'the dashboard front end is not built; run npm run build',
        )
      }

      reply.type(asset.contentType).header('vary', 'accept-encoding')
      if (immutable) {
        reply.header('cache-control', 'public, max-age=31536000, immutable')
      }
      if (/\bgzip\b/.test(request.headers['accept-encoding'] ?? '')) {
        reply.header('content-encoding', 'gzip')
        return reply.send(asset.gzipped)
      }
      return reply.send(asset.body)
    }

  app.get('/', { config: { dashboardPublic: true } }, sendAsset('index.html', false))
  app.get<{ Params: { name: string } }>(
    '/assets/:name',
    {
      config: { dashboardPublic: true },
      schema: {
        params: {
          type: 'object',
          required: ['name'],
          properties: { name: { type: 'string', pattern: '^[\\w.-]{1,100}$' } },
        },
      },
    },
    async (request, reply) => {
      const { name } = request.params
      // Only the hashed bundles are assets; index.html is served at / alone.
      if (name === 'index.html' || !assets.has(name)) {
        throw new AppError('IOTM_ERR_ROUTE_NOT_FOUND', `no dashboard asset ${JSON.stringify(name)}`)
      }
      return sendAsset(name, true)(request, reply)
    },
  )

  // Sessions: who am I, sign in, sign out.
  app.get('/api/session', async (request) => {
    const session = request.dashboardSession
    return {
      username: session?.username,
      csrf_token: session?.csrfToken,
      idle_timeout_seconds: deps.idleTimeoutSeconds,
    }
  })

  app.post<{ Body: { username: string; password: string } }>(
    '/api/session',
    { config: { dashboardPublic: true }, schema: { body: signInBodySchema } },
    async (request, reply) => {
      const { username, password } = request.body
      const retryAfterSeconds = throttle.retryAfterSeconds(username, request.ip)
      if (retryAfterSeconds > 0) {
        throw new AppError(
          'IOTM_ERR_DASHBOARD_SIGNIN_THROTTLED',
          `too many failed sign-ins for this user or address; try again in ${retryAfterSeconds} s`,
          { retryAfterSeconds },
        )
      }

      const admin = admins.find(username)
      const valid =
        admin === undefined
          ? await spendPasswordCheckTime(password).then(() => false)
          : await verifyPassword(password, admin.passwordHash)
      if (admin === undefined || !valid) {
        throttle.recordFailure(username, request.ip)
        logger.info({ username, ip: request.ip }, 'dashboard sign-in failed')
        throw new AppError(
          'IOTM_ERR_DASHBOARD_SIGNIN_FAILED',
          'the user name or password is incorrect',
        )
      }

      // A fresh session id at every sign-in, and the old session (if any)
      // ended, so an id planted before sign-in is worth nothing after it.
      const previous = readCookie(request, SESSION_COOKIE)
      if (previous !== undefined && previous !== '') {
        sessions.destroy(previous)
      }
      throttle.recordSuccess(username)
      const created = sessions.create(admin.id, request.ip)
      setSessionCookie(reply, created.id)
      logger.info({ username, ip: request.ip }, 'dashboard sign-in')

      return {
        username: admin.username,
        csrf_token: created.csrfToken,
        idle_timeout_seconds: deps.idleTimeoutSeconds,
      }
    },
  )

  app.delete('/api/session', async (request, reply) => {
    const session = request.dashboardSession as NonNullable<typeof request.dashboardSession>
    sessions.destroy(session.id)
    live.endSession(session.id)
    clearSessionCookie(reply)
    logger.info({ username: session.username, ip: request.ip }, 'dashboard sign-out')

    return { result: 'signed_out' }
  })

  // Plans and accounts.
  app.get('/api/plans', async () => ({
    plans: PLAN_IDS.map((id) => ({
      id,
      name: plans[id].name,
      device_limit: plans[id].deviceLimit,
    })),
  }))

  app.get<{ Querystring: { q?: string } }>(
    '/api/accounts',
    { schema: { querystring: searchQuerySchema } },
    async (request) => view.search((request.query.q ?? '').trim(), SEARCH_LIMIT),
  )

  app.get<{ Params: { account_id: string } }>(
    '/api/accounts/:account_id',
    { schema: { params: accountParamsSchema } },
    async (request) => {
      const accountId = normalizeId(request.params.account_id)
      request.accountId = accountId
      const detail = view.detail(accountId, new Date(deps.now()))
      if (detail === undefined) {
        throw accountNotFound(accountId)
      }
      return detail
    },
  )

  app.post<{ Params: { account_id: string }; Body: { plan: PlanId } }>(
    '/api/accounts/:account_id/plan',
    { schema: { params: accountParamsSchema, body: planBodySchema } },
    async (request) => {
      const accountId = normalizeId(request.params.account_id)
      request.accountId = accountId
      if (view.card(accountId) === undefined) {
        throw accountNotFound(accountId)
      }

      const session = request.dashboardSession as NonNullable<typeof request.dashboardSession>
      const change = planStore.change(accountId, request.body.plan, session.username)
      logger.info(
        { account: accountId, from: change.fromPlan, to: change.toPlan, by: change.changedBy },
        'account plan changed',
      )
      const plan = plans[change.toPlan]

      return {
        result: 'plan_changed',
        message: `${accountId} is now on the ${plan.name} plan, with up to ${plan.deviceLimit} devices`,
        account: view.card(accountId),
      }
    },
  )

  // Live updates; EventSource sends the cookie, and GET needs no CSRF token.
  app.get('/api/events', async (request, reply) => {
    const session = request.dashboardSession as NonNullable<typeof request.dashboardSession>
    reply.hijack()
    live.open(reply.raw, {
      sessionKey: session.id,
      // Peeks without recording activity: an open tab alone does not keep a session alive.
      isSessionValid: () => sessions.peek(session.id),
    })
  })
}
