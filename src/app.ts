import type { TlsOptions } from 'node:tls'
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from 'fastify'
import type { Logger } from 'pino'
import { registerTokenCheck } from './auth.js'
import type { ConnectionLimits } from './config.js'
import { AppError, toAppError, toErrorBody } from './errors.js'
import { type RequestRejectedEvent, requestRejected } from './events.js'
import { registerJsonBodyParser } from './json-body.js'
import type { Readiness } from './readiness.js'
import { registerHealthRoute } from './routes/health.js'
import { INGEST_BODY_LIMIT, registerIngestRoute } from './routes/ingest.js'
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
  logger: Logger
  /** TLS server options; without them the app serves plain HTTP, for `inject` in tests only. */
  https?: TlsOptions
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
// appends "; charset=utf-8" to JSON unless told otherwise.
const JSON_CONTENT_TYPE = 'application/json'

/** Builds the Fastify application without listening; the caller owns the lifecycle. */
export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  const limits = deps.limits ?? DEFAULT_LIMITS
  const app = Fastify({
    loggerInstance: deps.logger,
    ...(deps.https === undefined ? {} : { https: withHeaderDeadline(deps.https, limits) }),
    bodyLimit: INGEST_BODY_LIMIT,
    // The onResponse hook below writes one line per request instead.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
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

  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('content-type', JSON_CONTENT_TYPE)
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
    done()
  })

  app.setErrorHandler((error, request, reply) => {
    const appError = toAppError(error)
    logFailure(request, appError)

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
    logFailure(request, appError)
    reply.code(404).send(toErrorBody(appError))
  })

  registerHealthRoute(app)
  if (deps.readiness !== undefined) {
    registerReadinessRoute(app, deps.readiness)
  }
  registerIngestRoute(app, deps.queue)
  registerQueryRoutes(app, deps.store)

  return app
}

function logFailure(request: FastifyRequest, error: AppError): void {
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
  if (error.statusCode >= 500 && error.cause === undefined) {
    // Load shedding (a full queue, a shutdown) has no cause to show, and a
    // stack per rejected request would slow an overloaded server further.
    request.log.warn(fields, error.message)
  } else if (error.statusCode >= 500) {
    // The cause (a SqliteError, a bug) matters to the operator, never to the client.
    request.log.error({ ...fields, err: error.cause ?? error }, error.message)
  } else {
    request.log.info(fields, error.message)
  }
}
