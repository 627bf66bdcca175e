import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import type { FastifySchema, FastifySchemaCompiler } from 'fastify'
import { AppError } from './errors.js'

type HttpPart = 'body' | 'querystring' | 'params' | 'headers'

// Annotation keyword: a schema may explain its `pattern` in words, because a
// regular expression is no message for a client.
const PATTERN_MESSAGE = 'patternMessage'

/** Names the JSON type of a value for messages: `null`, `an array`, `a string`. */
export function describeValue(value: unknown): string {
  if (value === null) {
    return 'null'
  }
  if (Array.isArray(value)) {
    return 'an array'
  }
  if (typeof value === 'object') {
    return 'an object'
  }

  return `a ${typeof value}`
}

function fieldOf(error: ErrorObject): string {
  if (error.keyword === 'required') {
    return String(error.params.missingProperty)
  }
  if (error.keyword === 'additionalProperties') {
    return String(error.params.additionalProperty)
  }

  return error.instancePath.replace(/^\//, '').replaceAll('/', '.')
}

function problemOf(error: ErrorObject, field: string, part: HttpPart): string {
  const { keyword, params, data, parentSchema } = error
  switch (keyword) {
    case 'required':
      return `${field} is missing`
    case 'additionalProperties': {
      const known = Object.keys((parentSchema?.properties as object | undefined) ?? {})
      const noun = part === 'body' ? 'field' : 'parameter'
      return `${field} is not a known ${noun}; expected only ${known.join(', ')}`
    }
    case 'type':
      if (field === '' && part === 'body') {
        return `request body must be a JSON object, got ${describeValue(data)}`
      }
      return `${field} must be ${params.type === 'integer' ? 'an integer' : `a ${params.type}`}, got ${describeValue(data)}`
    case 'minLength':
      return params.limit === 1
        ? `${field} must not be empty`
        : `${field} must be at least ${params.limit} characters long`
    case 'maxLength':
      return `${field} must be at most ${params.limit} characters long, got ${String(data).length}`
    case 'pattern': {
      const message = parentSchema?.[PATTERN_MESSAGE]
      return `${field} ${typeof message === 'string' ? message : `must match ${params.pattern}`}`
    }
    case 'minimum':
      return `${field} must be at least ${params.limit}, got ${JSON.stringify(data)}`
    case 'maximum':
      return `${field} must be at most ${params.limit}, got ${JSON.stringify(data)}`
    case 'enum':
      return `${field} must be one of ${(params.allowedValues as unknown[]).join(', ')}`
    default:
      return `${field || part} ${error.message ?? 'is invalid'}`
  }
}

/** Converts the first schema violation into a 400 that names the field and the problem. */
export function toValidationError(error: ErrorObject, part: HttpPart): AppError {
  const field = fieldOf(error)
  const code = part === 'body' ? 'IOTM_ERR_FIELD_INVALID' : 'IOTM_ERR_QUERY_INVALID_PARAMETER'

  return new AppError(code, problemOf(error, field, part), field === '' ? {} : { field })
}

/**
 * Creates Fastify's schema compiler. Bodies are validated without type
 * coercion, so a number never passes as a string; query strings and path
 * parameters arrive as text and are coerced to the schema's types. Unknown
 * properties are rejected, never silently removed.
 */
export function createValidatorCompiler(): FastifySchemaCompiler<FastifySchema> {
  const common = { allErrors: false, removeAdditional: false, verbose: true, strict: true } as const
  const strict = new Ajv({ ...common, coerceTypes: false, useDefaults: false })
  const coercing = new Ajv({ ...common, coerceTypes: true, useDefaults: true })
  for (const ajv of [strict, coercing]) {
    ajv.addKeyword({ keyword: PATTERN_MESSAGE, schemaType: 'string' })
  }

  return ({ schema, httpPart }) => {
    const part = (httpPart ?? 'body') as HttpPart
    const validate: ValidateFunction = (part === 'body' ? strict : coercing).compile(
      schema as object,
    )

    return (data: unknown) => {
      if (validate(data)) {
        return { value: data }
      }

      return {
        error: toValidationError((validate.errors as ErrorObject[])[0] as ErrorObject, part),
      }
    }
  }
}
