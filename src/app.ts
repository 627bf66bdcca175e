import type { TlsOptions } from 'node:tls'
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from 'fastify'
import type { Logger } from 'pino'
import { registerTokenCheck } from './auth.js'
import type { ConnectionLimits } from './config.js'
import type { Dashboard } from './dashboard/index.js'
import { AppError, toAppError, toErrorBody } from './errors.js'
import {
  type RequestCompletedEvent,
  type RequestRejectedEvent,
  requestCompleted,
  requestRejected,
} from './events.js'
import type { LoginExporter } from './export.js'
import { registerJsonBodyParser } from './json-body.js'
import { type BatchLimits, DEFAULT_BATCH_LIMITS } from './limits.js'
import { registerOpenApi } from './openapi.js'
import { type RateLimitOptions, registerRateLimit } from './rate-limit.js'
import type { Readiness } from './readiness.js'
import { createRepeatLimiter, type RepeatLimiter } from './repeat-limiter.js'
import { registerBatchRoute } from './routes/batch.js'
import { registerHealthRoute } from './routes/health.js'
import { INGEST_BODY_LIMIT, registerIngestRoute } from './routes/ingest.js'
import { registerLimitsRoute } from './routes/limits.js'
import { registerQueryRoutes } from './routes/queries.js'
import { registerReadinessRoute } from './routes/readiness.js'
import type { Store } from './store.js'
import type { TokenVerifier } from './tokens.js'
import { createValidatorCompiler } from './validation.js'
import type { WriteQueue } from './write-queue.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The account a request concerns, for the request log line. */
    accountId: string | undefined
  }
}

export interface AppDependencies {
  store: Store
  queue: WriteQueue
  tokens: TokenVerifier
  exporter: LoginExporter
  logger: Logger
  /** TLS server options; without them the app serves plain HTTP, for `inject` in tests only. */
  https?: TlsOptions
  /** The admin dashboard under /dashboard; left out, the server has none. */
  dashboard?: Dashboard
  /** The per-token rate limit; without it, or at rate 0, requests are not limited. */
  rateLimit?: RateLimitOptions
  /** Limits of POST /metrics/batch; the defaults when absent. */
  batchLimits?: BatchLimits
  /** Timeouts and the connection cap; the defaults of `parseConfig` when absent. */
  limits?: ConnectionLimits
  /** Reports whether the server can take logins now, for `GET /readyz`. */
  readiness?: Readiness
}

const DEFAULT_LIMITS: ConnectionLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  // Longer than the 60 s idle timeout of common load balancers, so the
  // server is not the side that closes a connection a client just reused.
  keepAliveTimeoutMs: 72_000,
  maxConnections: 10_000,
}

/**
 * Adds the header deadline to the TLS options, because Node reads it only
 * when the server is created. Node checks the deadlines of open connections
 * every `connectionsCheckingInterval` ms (30 s by default), so the interval
 * is shortened for the timeouts to fire close to their value.
 */
function withHeaderDeadline(https: TlsOptions, limits: ConnectionLimits): TlsOptions {
  return {
    ...https,
    headersTimeout: limits.headersTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
  } as TlsOptions
}

// Our clients compare the Content-Type header byte for byte, and Fastify
// appends "; charset=utf-8" to JSON unless the type is set explicitly.
const JSON_CONTENT_TYPE = 'application/json'

// Shortest time between two log lines of one 503 code (IOTM_ERR_QUEUE_FULL and the like).
const UNAVAILABLE_LOG_INTERVAL_MS = 1000

/** Builds the Fastify application without listening; the caller owns the lifecycle. */
export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  const limits = deps.limits ?? DEFAULT_LIMITS
  const app = Fastify({
    loggerInstance: deps.logger,
    ...(deps.https === undefined ? {} : { https: withHeaderDeadline(deps.https, limits) }),
    bodyLimit: INGEST_BODY_LIMIT,
    // The onResponse hook below writes one line per request instead.
    logController: new LogController({ disableRequestLogging: true }),
    // Requests that arrive while the server closes go through the routes,
    // so they get our JSON error (the write queue rejects logins with 503) rather than
    // Fastify's own 503 body.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: 30_000,
  }) as unknown as FastifyInstance
  // Beyond the cap Node closes new connections at once, before the TLS
  // handshake, so a flood of idle sockets cannot exhaust file descriptors.
  app.server.maxConnections = limits.maxConnections

  app.decorateRequest('accountId', undefined)
  app.setValidatorCompiler(createValidatorCompiler())
  registerJsonBodyParser(app)
  await registerTokenCheck(app, deps.tokens)
  if (deps.rateLimit !== undefined) {
    registerRateLimit(app, deps.rateLimit)
  }

  app.addHook('onSend', (_request, reply, payload, done) => {
    // A route that set its own type (an HTML page, a script, an event
    // stream, a CSV or NDJSON export) keeps it; JSON, and the text/plain
    // Fastify gives a bare string, become exactly application/json.
    const type = String(reply.getHeader('content-type') ?? '')
    const isStream = typeof (payload as { pipe?: unknown } | null)?.pipe === 'function'
    const isJson =
      type === '' || type.startsWith('application/json') || type.startsWith('text/plain')
    if (isJson && !isStream) {
      reply.header('content-type', JSON_CONTENT_TYPE)
    }
    // Replies carry account data and are never worth caching by a proxy, and
    // a browser must not guess another type than the one sent. Hashed static
    // assets set their own long-lived caching, which stays.
    if (!reply.hasHeader('cache-control')) {
      reply.header('cache-control', 'no-store')
    }
    reply.header('x-content-type-options', 'nosniff')
    done(null, payload)
  })

  app.addHook('onResponse', (request, reply, done) => {
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? null,
        status: reply.statusCode,
        latencyMs: Math.round(reply.elapsedTime * 1000) / 1000,
        account: request.accountId ?? null,
        ip: request.ip,
      },
      'request completed',
    )
    if (requestCompleted.hasSubscribers) {
      const event: RequestCompletedEvent = {
        method: request.method,
        route: request.routeOptions.url ?? null,
        statusCode: reply.statusCode,
        durationMs: reply.elapsedTime,
      }
      requestCompleted.publish(event)
    }
    done()
  })

  const unavailableLog = createRepeatLimiter(UNAVAILABLE_LOG_INTERVAL_MS)
  app.setErrorHandler((error, request, reply) => {
    const appError = toAppError(error)
    logFailure(request, appError, unavailableLog)

    if (appError.retryAfterSeconds !== undefined) {
      reply.header('retry-after', String(appError.retryAfterSeconds))
    }
    reply.code(appError.statusCode).send(toErrorBody(appError))
  })

  app.setNotFoundHandler((request, reply) => {
    const appError = new AppError(
      'IOTM_ERR_ROUTE_NOT_FOUND',
      `no route ${request.method} ${request.url.split('?')[0]}; see the README for the endpoints`,
    )
    logFailure(request, appError, unavailableLog)
    reply.code(404).send(toErrorBody(appError))
  })

  await registerOpenApi(app)
  registerHealthRoute(app)
  if (deps.readiness !== undefined) {
    registerReadinessRoute(app, deps.readiness)
  }
  registerIngestRoute(app, deps.queue)
  const batchLimits = deps.batchLimits ?? DEFAULT_BATCH_LIMITS
  registerBatchRoute(app, deps.queue, batchLimits)
  registerLimitsRoute(app, batchLimits, deps.rateLimit)
  registerQueryRoutes(app, deps.store, deps.exporter)
  await deps.dashboard?.register(app)

  return app
}

function logFailure(request: FastifyRequest, error: AppError, unavailableLog: RepeatLimiter): void {
  if (requestRejected.hasSubscribers) {
    const event: RequestRejectedEvent = {
      code: error.code,
      statusCode: error.statusCode,
      route: request.routeOptions.url ?? null,
      ip: request.ip,
    }
    requestRejected.publish(event)
  }

  const fields = { code: error.code, field: error.field, ip: request.ip }
  if (error.statusCode < 500) {
    request.log.info(fields, error.message)
    return
  }

  // A full queue or a failing disk fails every request at once. A line per
  // request would flood the log of a server already in trouble, so each 503
  // code logs one line a second, with the count of those held back.
  // Internal errors (500) are bugs, and each one is logged.
  const heldBack = error.statusCode === 503 ? unavailableLog.admit(error.code) : 0
  if (heldBack === undefined) {
    return
  }
  if (error.cause === undefined) {
    // Load shedding (a full queue, a shutdown) has no cause to show.
    request.log.warn({ ...fields, heldBack }, error.message)
  } else {
    // The cause (a SqliteError, a bug) matters to the operator, never to the client.
    request.log.error({ ...fields, heldBack, err: error.cause }, error.message)
  }
}
