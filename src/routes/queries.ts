import type { FastifyInstance } from 'fastify'
import { decodeCursor, encodeCursor } from '../cursor.js'
import { AppError } from '../errors.js'
import { type LoginExporter, negotiateLoginFormat } from '../export.js'
import { normalizeId } from '../login.js'
import { idSchema } from '../login-schema.js'
import type { AccountSummary, DeviceSummary, Store } from '../store.js'
import { formatTimestamp, parseTimestamp } from '../timestamp.js'
import { exportResponseContent, sendLoginExport } from './login-export.js'

export const DEFAULT_PAGE_SIZE = 100
export const MAX_PAGE_SIZE = 1000

const pagingProperties = {
  limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
  cursor: { type: 'string', minLength: 1, maxLength: 512 },
} as const

const pagingQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: pagingProperties,
} as const

const loginQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...pagingProperties,
    account_id: idSchema,
    user_id: idSchema,
    since: { type: 'string', minLength: 1, maxLength: 64 },
    until: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const

const accountParamsSchema = {
  type: 'object',
  required: ['account_id'],
  additionalProperties: false,
  properties: { account_id: idSchema },
} as const

const summaryProperties = {
  logins: { type: 'integer' },
  first_login: { type: 'string' },
  last_login: { type: 'string' },
} as const

const accountSchema = {
  type: 'object',
  properties: {
    account_id: { type: 'string' },
    devices: { type: 'integer' },
    ...summaryProperties,
  },
} as const

const deviceSchema = {
  type: 'object',
  properties: { user_id: { type: 'string' }, ...summaryProperties },
} as const

const nextCursorSchema = { type: ['string', 'null'] } as const

interface PagingQuery {
  limit: number
  cursor?: string
}

interface LoginListQuery extends PagingQuery {
  account_id?: string
  user_id?: string
  since?: string
  until?: string
}

function accountReply(summary: AccountSummary) {
  return {
    account_id: summary.accountId,
    devices: summary.devices,
    logins: summary.logins,
    first_login: formatTimestamp(summary.firstLoginNs),
    last_login: formatTimestamp(summary.lastLoginNs),
  }
}

function deviceReply(summary: DeviceSummary) {
  return {
    user_id: summary.userId,
    logins: summary.logins,
    first_login: formatTimestamp(summary.firstLoginNs),
    last_login: formatTimestamp(summary.lastLoginNs),
  }
}

function accountNotFound(accountId: string): AppError {
  return new AppError(
    'IOTM_ERR_ACCOUNT_NOT_FOUND',
    `account ${JSON.stringify(accountId)} has no stored logins`,
    {
      field: 'account_id',
    },
  )
}

/**
 * Registers the read-scope GET endpoints: accounts, their devices, and
 * logins over time, which GET /logins also exports as NDJSON or CSV.
 */
export function registerQueryRoutes(
  app: FastifyInstance,
  store: Store,
  exporter: LoginExporter,
): void {
  const config = { scope: 'read' } as const

  app.get<{ Querystring: PagingQuery }>(
    '/accounts',
    {
      config,
      schema: {
        querystring: pagingQuerySchema,
        response: {
          200: {
            type: 'object',
            properties: {
              accounts: { type: 'array', items: accountSchema },
              next_cursor: nextCursorSchema,
            },
          },
        },
      },
    },
    async (request) => {
      const { limit, cursor } = request.query
      const after =
        cursor === undefined ? undefined : decodeCursor<{ a: string }>(cursor, { a: 'string' }).a

      const page = store.listAccounts(limit, after)

      return {
        accounts: page.items.map(accountReply),
        next_cursor: page.next === undefined ? null : encodeCursor({ a: page.next }),
      }
    },
  )

  app.get<{ Params: { account_id: string } }>(
    '/accounts/:account_id',
    { config, schema: { params: accountParamsSchema, response: { 200: accountSchema } } },
    async (request) => {
      const accountId = normalizeId(request.params.account_id)
      request.accountId = accountId

      const summary = store.getAccount(accountId)
      if (summary === undefined) {
        throw accountNotFound(accountId)
      }

      return accountReply(summary)
    },
  )

  app.get<{ Params: { account_id: string }; Querystring: PagingQuery }>(
    '/accounts/:account_id/users',
    {
      config,
      schema: {
        params: accountParamsSchema,
        querystring: pagingQuerySchema,
        response: {
          200: {
            type: 'object',
            properties: {
              account_id: { type: 'string' },
              users: { type: 'array', items: deviceSchema },
              next_cursor: nextCursorSchema,
            },
          },
        },
      },
    },
    async (request) => {
      const accountId = normalizeId(request.params.account_id)
      request.accountId = accountId
      const { limit, cursor } = request.query
      const after =
        cursor === undefined ? undefined : decodeCursor<{ u: string }>(cursor, { u: 'string' }).u

      const page = store.listDevices(accountId, limit, after)
      if (page === undefined) {
        throw accountNotFound(accountId)
      }

      return {
        account_id: accountId,
        users: page.items.map(deviceReply),
        next_cursor: page.next === undefined ? null : encodeCursor({ u: page.next }),
      }
    },
  )

  app.get<{ Querystring: LoginListQuery }>(
    '/logins',
    {
      config,
      schema: {
        querystring: loginQuerySchema,
        response: {
          200: {
            description:
              'One page of logins as JSON, or every matching login when Accept asks for NDJSON or CSV',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    logins: {
                      type: 'array',
                      items: {
                        type: 'object',
                        properties: {
                          account_id: { type: 'string' },
                          user_id: { type: 'string' },
                          timestamp: { type: 'string' },
                        },
                      },
                    },
                    next_cursor: nextCursorSchema,
                  },
                },
              },
              ...exportResponseContent,
            },
          },
        },
      },
    },
    async (request, reply) => {
      const query = request.query
      if (query.user_id !== undefined && query.account_id === undefined) {
        throw new AppError(
          'IOTM_ERR_QUERY_INVALID_PARAMETER',
          'user_id needs account_id, because user ids are only unique within an account',
          { field: 'user_id' },
        )
      }
      reply.header('vary', 'Accept')
      const format = negotiateLoginFormat(request.headers.accept)
      if (format !== 'json' && query.cursor !== undefined) {
        throw new AppError(
          'IOTM_ERR_QUERY_INVALID_PARAMETER',
          'cursor only applies to the JSON listing; an NDJSON or CSV export always streams every matching login',
          { field: 'cursor' },
        )
      }

      const sinceNs = query.since === undefined ? undefined : parseTimestamp(query.since, 'since')
      const untilNs = query.until === undefined ? undefined : parseTimestamp(query.until, 'until')
      const position =
        query.cursor === undefined
          ? undefined
          : decodeCursor<{ t: string; d: number }>(query.cursor, { t: 'string', d: 'number' })
      if (position !== undefined && !/^\d{1,19}$/.test(position.t)) {
        throw new AppError('IOTM_ERR_QUERY_INVALID_CURSOR', 'cursor is not valid here', {
          field: 'cursor',
        })
      }
      const accountId = query.account_id === undefined ? undefined : normalizeId(query.account_id)
      request.accountId = accountId
      const userId = query.user_id === undefined ? undefined : normalizeId(query.user_id)
      if (format !== 'json') {
        return sendLoginExport(
          request,
          reply,
          exporter.open({ accountId, userId, sinceNs, untilNs }, format),
          format,
        )
      }

      const page = store.listLogins({
        limit: query.limit,
        accountId,
        userId,
        sinceNs,
        untilNs,
        after:
          position === undefined
            ? undefined
            : { timestampNs: BigInt(position.t), deviceKey: position.d },
      })

      return {
        logins: page.items.map((login) => ({
          account_id: login.accountId,
          user_id: login.userId,
          timestamp: formatTimestamp(login.timestampNs),
        })),
        next_cursor:
          page.next === undefined
            ? null
            : encodeCursor({ t: page.next.timestampNs.toString(), d: page.next.deviceKey }),
      }
    },
  )
}
