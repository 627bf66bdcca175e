import type { FastifyInstance, FastifyRequest, FastifySchema } from 'fastify'
import { assertAccountAllowed } from '../auth.js'
import { type BatchBody, type BatchEntry, registerBatchBodyParsers } from '../batch-body.js'
import { createBodyDecoder } from '../body-decoding.js'
import { AppError, type ErrorBody, toErrorBody } from '../errors.js'
import { type BatchRequestEvent, batchRequestProcessed } from '../events.js'
import { forbiddenKeyError } from '../json-body.js'
import type { BatchLimits } from '../limits.js'
import { type Login, type LoginBody, type LoginOutcome, toLogin } from '../login.js'
import { loginBodySchema } from '../login-schema.js'
import { createValidatorCompiler, describeValue } from '../validation.js'
import type { WriteQueue } from '../write-queue.js'

/** The result of one login of a batch, at its index in the request. */
export interface BatchResult {
  index: number
  /** The 1-based line of an NDJSON body. */
  line?: number
  result: LoginOutcome | 'rejected'
  /** Why the login was rejected: the error reply POST /metrics would send for it alone. */
  error?: ErrorBody
}

/** The reply body of POST /metrics/batch, also sent with a whole-batch rejection. */
export interface BatchSummary {
  atomic: boolean
  received: number
  stored: number
  duplicate: number
  rejected: number
  results: BatchResult[]
}

const errorSchema = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    code: { type: 'string' },
    message: { type: 'string' },
    field: { type: 'string' },
  },
} as const

const batchReplySchema = {
  type: 'object',
  properties: {
    atomic: { type: 'boolean' },
    received: { type: 'integer' },
    stored: { type: 'integer' },
    duplicate: { type: 'integer' },
    rejected: { type: 'integer' },
    results: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          index: { type: 'integer' },
          line: { type: 'integer' },
          result: { type: 'string', enum: ['stored', 'duplicate', 'rejected'] },
          error: errorSchema,
        },
      },
    },
  },
} as const

const batchQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    atomic: { type: 'boolean', default: false },
  },
} as const

type ValidateLogin = (value: unknown) => { value?: unknown; error?: Error }

/** A login that passed every check, with the index of its entry. */
interface AcceptedLogin {
  index: number
  login: Login
}

/** Identifies a login the way the store does, to find repeats within one batch. */
function loginKey(login: Login): string {
  // Ids are printable ASCII, so NUL cannot occur inside one.
  return `${login.accountId}\u0000${login.userId}\u0000${login.timestampNs}`
}

/**
 * Applies every check of POST /metrics to one entry: readable JSON, no
 * forbidden keys, the login schema, the timestamp and the token's account.
 */
function checkEntry(
  entry: BatchEntry,
  validate: ValidateLogin,
  request: FastifyRequest,
): Login | AppError {
  if (entry.error !== undefined) {
    return entry.error
  }
  const { value } = entry
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return new AppError(
      'IOTM_ERR_FIELD_INVALID',
      `each login must be a JSON object, got ${describeValue(value)}`,
    )
  }
  const forbidden = forbiddenKeyError(value)
  if (forbidden !== undefined) {
    return forbidden
  }

  const validation = validate(value)
  if (validation.error !== undefined) {
    return validation.error as AppError
  }

  try {
    const login = toLogin(value as LoginBody)
    assertAccountAllowed(request, login.accountId)
    return login
  } catch (error) {
    if (error instanceof AppError) {
      return error
    }
    throw error
  }
}

/**
 * Builds the error for a batch that stores nothing: 403 when the token's
 * account binding is the only reason, 400 otherwise.
 */
function batchRejectedError(summary: BatchSummary, rejections: AppError[]): AppError {
  const { atomic, received, rejected } = summary
  // Only the rejected entries are listed: they are what the client must fix.
  const details: Record<string, unknown> = {
    ...summary,
    results: summary.results.filter((result) => result.result === 'rejected'),
  }
  const reason = atomic
    ? `${rejected} of ${received} logins ${rejected === 1 ? 'was' : 'were'} rejected and atomic=true, so nothing was stored`
    : `all ${received} logins were rejected, so nothing was stored`

  if (rejections.every((error) => error.code === 'IOTM_ERR_AUTH_ACCOUNT_MISMATCH')) {
    return new AppError(
      'IOTM_ERR_AUTH_ACCOUNT_MISMATCH',
      `${reason}: this token may not send logins for their accounts; see results`,
      { details },
    )
  }

  return new AppError('IOTM_ERR_BATCH_REJECTED', `${reason}; see results`, { details })
}

function publishSummary(summary: BatchSummary, rejections: AppError[]): void {
  if (!batchRequestProcessed.hasSubscribers) {
    return
  }

  const rejectedByCode: Record<string, number> = {}
  for (const { code } of rejections) {
    rejectedByCode[code] = (rejectedByCode[code] ?? 0) + 1
  }
  const { atomic, received, stored, duplicate, rejected } = summary
  const event: BatchRequestEvent = { atomic, received, stored, duplicate, rejected, rejectedByCode }
  batchRequestProcessed.publish(event)
}

/** 201 when every login was new, 200 when every login is now stored, 207 when some were rejected. */
function statusOf(summary: BatchSummary): number {
  if (summary.rejected > 0) {
    return 207
  }

  return summary.duplicate === 0 ? 201 : 200
}

/**
 * POST /metrics/batch: checks each login of a JSON array or NDJSON body as
 * POST /metrics does, commits the valid ones in one transaction and replies,
 * after the commit, with one result per login in request order.
 */
export function registerBatchRoute(
  app: FastifyInstance,
  queue: WriteQueue,
  limits: BatchLimits,
): void {
  // The same schema and compiler as POST /metrics, so each login gets the same messages.
  const validate = createValidatorCompiler()({
    schema: loginBodySchema as FastifySchema,
    method: 'POST',
    url: '/metrics/batch',
    httpPart: 'body',
  }) as ValidateLogin

  // A plugin context, so the NDJSON parser and the batch body limit apply to this route only.
  app.register(async (batchApp) => {
    registerBatchBodyParsers(batchApp, limits.maxLogins)

    batchApp.post<{ Body: BatchBody | undefined; Querystring: { atomic: boolean } }>(
      '/metrics/batch',
      {
        config: { scope: 'ingest' },
        bodyLimit: limits.maxBytes,
        preParsing: createBodyDecoder({ limitUncompressed: true }),
        schema: {
          querystring: batchQuerySchema,
          response: { 200: batchReplySchema, 201: batchReplySchema, 207: batchReplySchema },
        },
      },
      async (request, reply) => {
        const { atomic } = request.query
        if (request.body === undefined) {
          throw new AppError(
            'IOTM_ERR_BODY_EMPTY',
            'request body is empty; send a JSON array of logins or NDJSON',
          )
        }
        const { entries } = request.body

        // Check every entry; the second of two equal logins is a duplicate of the first.
        const results: BatchResult[] = []
        const rejections: AppError[] = []
        const accepted: AcceptedLogin[] = []
        const firstIndexByKey = new Map<string, number>()
        for (const [index, entry] of entries.entries()) {
          // Accepted entries get their outcome once the transaction commits.
          const result: BatchResult =
            entry.line === undefined
              ? { index, result: 'stored' }
              : { index, line: entry.line, result: 'stored' }
          results.push(result)

          const checked = checkEntry(entry, validate, request)
          if (checked instanceof AppError) {
            result.result = 'rejected'
            result.error = toErrorBody(checked)
            rejections.push(checked)
            continue
          }

          const key = loginKey(checked)
          if (firstIndexByKey.has(key)) {
            result.result = 'duplicate'
            continue
          }
          firstIndexByKey.set(key, index)
          accepted.push({ index, login: checked })
        }

        const accounts = new Set(accepted.map(({ login }) => login.accountId))
        if (accounts.size === 1) {
          request.accountId = accepted[0]?.login.accountId
        }

        const summary: BatchSummary = {
          atomic,
          received: entries.length,
          stored: 0,
          duplicate: 0,
          rejected: rejections.length,
          results,
        }
        if (accepted.length === 0 || (atomic && rejections.length > 0)) {
          publishSummary(summary, rejections)
          throw batchRejectedError(summary, rejections)
        }

        // One transaction: every accepted login is stored, or none is.
        const outcomes = await queue.enqueueAll(accepted.map(({ login }) => login))
        for (const [position, { index }] of accepted.entries()) {
          const result = results[index] as BatchResult
          result.result = outcomes[position] as LoginOutcome
        }
        for (const result of results) {
          if (result.result === 'stored') {
            summary.stored++
          } else if (result.result === 'duplicate') {
            summary.duplicate++
          }
        }

        publishSummary(summary, rejections)
        reply.code(statusOf(summary))
        return summary
      },
    )
  })
}
