/** Identifiers: 1 to 128 printable ASCII characters without spaces. */
export const idSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 128,
  pattern: '^[\\x21-\\x7e]+$',
  patternMessage: 'must contain only printable ASCII characters without spaces',
} as const

/** The body of POST /metrics: exactly these three string fields. */
export const loginBodySchema = {
  type: 'object',
  required: ['account_id', 'user_id', 'timestamp'],
  additionalProperties: false,
  properties: {
    account_id: idSchema,
    user_id: idSchema,
    // The timestamp module parses and explains the exact RFC 3339 shape; the
    // schema only bounds the length so nothing huge reaches it.
    timestamp: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const
