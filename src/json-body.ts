import type { FastifyInstance, FastifyRequest } from 'fastify'
import { findDuplicateKey } from './duplicate-keys.js'
import { AppError } from './errors.js'

// Keys that can rewrite an object's prototype when a parsed body is later
// merged or copied by careless code.
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor'])

function findForbiddenKey(value: unknown): string | undefined {
  // An explicit stack, because a 16 KiB body can nest thousands of levels deep.
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const current = stack.pop()
    if (current === null || typeof current !== 'object') {
      continue
    }
    for (const key of Object.keys(current)) {
      if (FORBIDDEN_KEYS.has(key)) {
        return key
      }
      stack.push((current as Record<string, unknown>)[key])
    }
  }

  return undefined
}

/**
 * Parses a JSON text with the rules every ingest body shares. Throws a 400
 * AppError for an empty body, malformed JSON or a key repeated in one object.
 * `expected` names what the body should be, for the empty-body message.
 */
export function parseJsonText(text: string, expected: string): unknown {
  if (text.trim() === '') {
    throw new AppError('IOTM_ERR_BODY_EMPTY', `request body is empty; send ${expected}`)
  }

  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new AppError(
      'IOTM_ERR_BODY_INVALID_JSON',
      `request body is not valid JSON: ${(error as Error).message}`,
    )
  }

  const duplicate = findDuplicateKey(text)
  if (duplicate !== undefined) {
    throw new AppError(
      'IOTM_ERR_BODY_DUPLICATE_KEY',
      `JSON key ${JSON.stringify(duplicate)} appears more than once in one object; send each field once`,
      { field: duplicate },
    )
  }

  return value
}

/** Parses a JSON body; throws a 400 AppError for empty, malformed, duplicate-key or prototype-poisoning input. */
export function parseJsonBody(text: string): unknown {
  const value = parseJsonText(text, 'a JSON object')

  const forbidden = forbiddenKeyError(value)
  if (forbidden !== undefined) {
    throw forbidden
  }

  return value
}

/** Returns the 400 for a parsed JSON value that contains `__proto__` or `constructor` keys, if it does. */
export function forbiddenKeyError(value: unknown): AppError | undefined {
  const forbidden = findForbiddenKey(value)
  if (forbidden === undefined) {
    return undefined
  }

  return new AppError('IOTM_ERR_BODY_FORBIDDEN_KEY', `JSON key "${forbidden}" is not allowed`, {
    field: forbidden,
  })
}

/**
 * Makes application/json the only accepted request body type. Every other
 * type, form-encoded included, fails with Fastify's media type error, which
 * the error handler turns into a 400.
 */
export function registerJsonBodyParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'string' },
    (
      _request: FastifyRequest,
      body: string | Buffer,
      done: (error: Error | null, value?: unknown) => void,
    ) => {
      try {
        done(null, parseJsonBody(body.toString()))
      } catch (error) {
        done(error as Error)
      }
    },
  )
}
