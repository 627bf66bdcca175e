import type { TlsOptions } from 'node:tls'
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from 'fastify'
import type { Logger } from 'pino'
import { registerTokenCheck } from './auth.js'
import { AppError, toAppError, toErrorBody } from './errors.js'
import {
  type RequestCompletedEvent,
  type RequestRejectedEvent,
  requestCompleted,
  requestRejected,
} from './events.js'
import type { LoginExporter } from './export.js'
import { registerJsonBodyParser } from './json-body.js'
import { registerOpenApi } from './openapi.js'
import { registerHealthRoute } from './routes/health.js'
import { INGEST_BODY_LIMIT, registerIngestRoute } from './routes/ingest.js'
import { registerQueryRoutes } from './routes/queries.js'
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
}

// Our clients compare the Content-Type header byte for byte, and Fastify
// appends "; charset=utf-8" to JSON unless told otherwise.
const JSON_CONTENT_TYPE = 'application/json'

/** Builds the Fastify application without listening; the caller owns the lifecycle. */
export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger,
    ...(deps.https === undefined ? {} : { https: deps.https }),
    bodyLimit: INGEST_BODY_LIMIT,
    // The onResponse hook below writes one line per request instead.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Longer than the 60 s idle timeout of common load balancers, so the
    // server is not the side that closes a connection a client just reused.
    keepAliveTimeout: 72_000,
    requestTimeout: 30_000,
    connectionTimeout: 30_000,
  }) as unknown as FastifyInstance

  app.decorateRequest('accountId', undefined)
  app.setValidatorCompiler(createValidatorCompiler())
  registerJsonBodyParser(app)
  await registerTokenCheck(app, deps.tokens)

  app.addHook('onSend', (_request, reply, payload, done) => {
    // A stream is an export of GET /logins, which sets its own type; every
    // other reply, errors included, is JSON.
    if (typeof (payload as { pipe?: unknown } | null)?.pipe !== 'function') {
      reply.header('content-type', JSON_CONTENT_TYPE)
    }
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

  await registerOpenApi(app)
  registerHealthRoute(app)
  registerIngestRoute(app, deps.queue)
  registerQueryRoutes(app, deps.store, deps.exporter)

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
  if (error.statusCode >= 500) {
    // The cause (a SqliteError, a bug) matters to the operator, never to the client.
    request.log.error({ ...fields, err: error.cause ?? error }, error.message)
  } else {
    request.log.info(fields, error.message)
  }
}
