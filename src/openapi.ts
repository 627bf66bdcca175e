import { readFileSync } from 'node:fs'
import swagger from '@fastify/swagger'
import type { FastifyInstance } from 'fastify'
import { ERROR_CODES } from './errors.js'

const packageJson = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string; description: string }

/** The reply shape of every error, as src/errors.ts builds it. */
const errorReplySchema = {
  description: 'Error; the code is stable and listed in src/errors.ts',
  type: 'object',
  required: ['statusCode', 'error', 'code', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    code: { type: 'string', enum: Object.keys(ERROR_CODES) },
    message: { type: 'string' },
    field: { type: 'string', description: 'The request field or query parameter at fault' },
  },
} as const

/**
 * Replaces our ajv annotation keyword `patternMessage` with a standard
 * `description`, because OpenAPI schema objects do not allow unknown keywords.
 */
function toOpenApiSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) {
    return schema.map(toOpenApiSchema)
  }
  if (schema === null || typeof schema !== 'object') {
    return schema
  }

  const result: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'patternMessage') {
      result.description ??= `The value ${value}.`
      continue
    }
    result[key] = toOpenApiSchema(value)
  }

  return result
}

/**
 * Registers @fastify/swagger, which collects the schemas of the routes
 * registered after it, and serves the OpenAPI 3.1 document at
 * GET /openapi.json. The document is public: it describes the API and contains
 * no data, and the same file is checked in as docs/openapi.json.
 */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      // 3.1 because the route schemas use JSON Schema type arrays such as ["string", "null"].
      openapi: '3.1.0',
      info: {
        title: 'iot-metrics-server',
        description: packageJson.description,
        version: packageJson.version,
      },
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            description: 'An ingest token for POST /metrics, a read token for the GET endpoints',
          },
        },
      },
    },
    transform({ schema, url, route }) {
      // The dashboard's JSON endpoints serve its own page, behind a session
      // cookie; they are not part of the device and query API.
      if (url.startsWith('/dashboard')) {
        return { schema: { ...schema, hide: true }, url }
      }
      const scope = route.config?.scope
      const converted = (toOpenApiSchema(schema ?? {}) ?? {}) as Record<string, unknown>
      const response = { ...(converted.response as object | undefined), default: errorReplySchema }
      const transformed: Record<string, unknown> = { ...converted, response }
      if (scope !== undefined) {
        transformed.security = [{ bearerAuth: [] }]
        transformed.description = `Requires a bearer token with the ${scope} scope.`
      }

      return { schema: transformed, url }
    },
  })

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}
