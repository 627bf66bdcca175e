import { STATUS_CODES } from 'node:http'

/**
 * Every error code the server can return, with its HTTP status. Codes are
 * stable: clients and dashboards may match on them.
 */
export const ERROR_CODES = {
  IOTM_ERR_AUTH_MISSING_TOKEN: 403,
  IOTM_ERR_AUTH_INVALID_TOKEN: 403,
  IOTM_ERR_AUTH_WRONG_SCOPE: 403,
  IOTM_ERR_AUTH_ACCOUNT_MISMATCH: 403,
  IOTM_ERR_BODY_INVALID_JSON: 400,
  IOTM_ERR_BODY_EMPTY: 400,
  IOTM_ERR_BODY_FORBIDDEN_KEY: 400,
  IOTM_ERR_BODY_DUPLICATE_KEY: 400,
  IOTM_ERR_BODY_UNSUPPORTED_MEDIA_TYPE: 400,
  IOTM_ERR_BODY_TOO_LARGE: 413,
  IOTM_ERR_BODY_UNSUPPORTED_ENCODING: 415,
  IOTM_ERR_BODY_INVALID_ENCODING: 400,
  IOTM_ERR_BATCH_EMPTY: 400,
  IOTM_ERR_BATCH_NOT_ARRAY: 400,
  IOTM_ERR_BATCH_TOO_MANY_LOGINS: 413,
  IOTM_ERR_BATCH_REJECTED: 400,
  IOTM_ERR_REQUEST_INVALID: 400,
  IOTM_ERR_FIELD_INVALID: 400,
  IOTM_ERR_TIMESTAMP_INVALID: 400,
  IOTM_ERR_TIMESTAMP_OUT_OF_RANGE: 400,
  IOTM_ERR_QUERY_INVALID_PARAMETER: 400,
  IOTM_ERR_QUERY_INVALID_CURSOR: 400,
  IOTM_ERR_ROUTE_NOT_FOUND: 404,
  IOTM_ERR_ACCOUNT_NOT_FOUND: 404,
  IOTM_ERR_RATE_LIMITED: 429,
  IOTM_ERR_QUEUE_FULL: 503,
  IOTM_ERR_QUEUE_CLOSED: 503,
  IOTM_ERR_STORAGE_BUSY: 503,
  IOTM_ERR_STORAGE_FULL: 503,
  IOTM_ERR_STORAGE_READONLY: 503,
  IOTM_ERR_STORAGE_FAILED: 503,
  IOTM_ERR_DASHBOARD_SIGNIN_FAILED: 401,
  IOTM_ERR_DASHBOARD_SIGNIN_THROTTLED: 429,
  IOTM_ERR_DASHBOARD_SESSION_REQUIRED: 401,
  IOTM_ERR_DASHBOARD_SESSION_EXPIRED: 401,
  IOTM_ERR_DASHBOARD_CSRF_INVALID: 403,
  IOTM_ERR_DASHBOARD_ORIGIN_INVALID: 403,
  IOTM_ERR_DASHBOARD_ASSETS_MISSING: 503,
  IOTM_ERR_INTERNAL: 500,
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export interface AppErrorOptions {
  /** The request field the error is about, such as `timestamp` or `limit`. */
  field?: string
  /** Seconds a client should wait before retrying, sent as `Retry-After`. */
  retryAfterSeconds?: number
  /** Extra members of the reply body, such as the per-login results of a rejected batch. */
  details?: Record<string, unknown>
  cause?: unknown
}

/** The one error type of the server: a stable code, its HTTP status and a message for the client. */
export class AppError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly field: string | undefined
  readonly retryAfterSeconds: number | undefined
  readonly details: Record<string, unknown> | undefined

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'AppError'
    this.code = code
    this.statusCode = ERROR_CODES[code]
    this.field = options.field
    this.retryAfterSeconds = options.retryAfterSeconds
    this.details = options.details
  }
}

/** The JSON body of every error reply. */
export interface ErrorBody {
  statusCode: number
  error: string
  code: ErrorCode
  message: string
  field?: string
  [detail: string]: unknown
}

export function toErrorBody(error: AppError): ErrorBody {
  const body: ErrorBody = {
    statusCode: error.statusCode,
    error: STATUS_CODES[error.statusCode] ?? 'Error',
    code: error.code,
    message: error.message,
  }
  if (error.field !== undefined) {
    body.field = error.field
  }
  if (error.details !== undefined) {
    Object.assign(body, error.details)
  }

  return body
}

interface FastifyLikeError {
  code?: unknown
  statusCode?: unknown
  message?: unknown
}

/**
 * Converts any error thrown while handling a request into an AppError.
 * Fastify's own errors keep their status but get our codes and messages;
 * anything unknown becomes a 500 whose message reveals nothing internal.
 */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) {
    return error
  }

  const { code, statusCode } = (error ?? {}) as FastifyLikeError
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError(
        'IOTM_ERR_BODY_TOO_LARGE',
        'request body is larger than this route accepts (POST /metrics: 16384 bytes; GET /limits lists every limit); send one login per request',
        { cause: error },
      )
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new AppError(
        'IOTM_ERR_BODY_UNSUPPORTED_MEDIA_TYPE',
        'Content-Type must be application/json',
        { cause: error },
      )
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('IOTM_ERR_BODY_EMPTY', 'request body is empty; send a JSON object', {
        cause: error,
      })
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new AppError('IOTM_ERR_BODY_INVALID_JSON', 'request body is not valid JSON', {
        cause: error,
      })
    default:
      break
  }

  // Any other client fault Fastify detects (a bad Content-Length, an
  // aborted body) keeps its 4xx status under one generic code.
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return new AppError('IOTM_ERR_REQUEST_INVALID', 'request is malformed', { cause: error })
  }

  return new AppError('IOTM_ERR_INTERNAL', 'internal server error', { cause: error })
}
