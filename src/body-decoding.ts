import type { IncomingMessage } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import * as zlib from 'node:zlib'
import type { FastifyReply, FastifyRequest, RequestPayload } from 'fastify'
import { AppError } from './errors.js'

type Decompressor = zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | Transform

// zstd is experimental in Node 22.15 and 23.8 and later; Node 20 has no zstd
// decompressor, so the coding is offered only when this runtime provides one.
const createZstdDecompress = (zlib as unknown as Record<string, unknown>).createZstdDecompress as
  | ((options?: { params?: Record<number, number> }) => Transform)
  | undefined
const ZSTD_WINDOW_LOG_MAX = (zlib.constants as unknown as Record<string, number | undefined>)
  .ZSTD_d_windowLogMax

/**
 * Creates a zstd decompressor whose window is at most 8 MiB (2^23), the
 * limit RFC 9659 sets for the zstd content coding, so a frame cannot make it
 * allocate the 128 MiB window zstd allows by default.
 */
function createBoundedZstdDecompress(create: NonNullable<typeof createZstdDecompress>): Transform {
  // NOTE: this path is not run by the tests, which use Node 20 without zstd.
  return ZSTD_WINDOW_LOG_MAX === undefined
    ? create()
    : create({ params: { [ZSTD_WINDOW_LOG_MAX]: 23 } })
}

/** Decompressors by content-coding token; `deflate` is the zlib format (RFC 2616 section 3.5). */
const DECOMPRESSORS: ReadonlyMap<string, () => Decompressor> = new Map<string, () => Decompressor>([
  ['gzip', () => zlib.createGunzip()],
  // RFC 2616 section 3.5: applications should consider x-gzip equivalent to gzip.
  ['x-gzip', () => zlib.createGunzip()],
  ['deflate', () => zlib.createInflate()],
  ['br', () => zlib.createBrotliDecompress()],
  ...(createZstdDecompress === undefined
    ? []
    : [
        ['zstd', () => createBoundedZstdDecompress(createZstdDecompress)] as [
          string,
          () => Decompressor,
        ],
      ]),
])

/** The Content-Encoding values the ingest routes accept, besides none and `identity`. */
export const SUPPORTED_CONTENT_ENCODINGS: readonly string[] = [...DECOMPRESSORS.keys()]

/** Formats the route of a request for error messages, as `POST /metrics`. */
function routeName(request: FastifyRequest): string {
  return `${request.method} ${request.routeOptions.url ?? request.url}`
}

function tooLargeError(request: FastifyRequest, limit: number, decoded: boolean): AppError {
  const after = decoded ? ' after decompression' : ''

  return new AppError(
    'IOTM_ERR_BODY_TOO_LARGE',
    `request body is larger than ${limit} bytes${after}, the limit of ${routeName(request)}; GET /limits lists the limits`,
  )
}

/**
 * Counts the body bytes on their way to Fastify, after decompression if any,
 * and fails as soon as they pass the limit. `receivedEncodedLength` is the count of bytes received on the
 * wire, which Fastify checks against Content-Length and its own body limit.
 */
class DecodedBodyStream extends Transform {
  receivedEncodedLength = 0
  decodedLength = 0
  readonly #limit: number
  readonly #onLimitExceeded: () => AppError

  constructor(limit: number, onLimitExceeded: () => AppError) {
    super()
    this.#limit = limit
    this.#onLimitExceeded = onLimitExceeded
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.decodedLength += chunk.length
    if (this.decodedLength > this.#limit) {
      callback(this.#onLimitExceeded())
      return
    }

    callback(null, chunk)
  }
}

/** Splits a Content-Encoding header into its lower-case codings, `identity` left out. */
function parseContentEncoding(header: string | string[] | undefined): string[] {
  const text = Array.isArray(header) ? header.join(',') : (header ?? '')

  return text
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && coding !== 'identity')
}

function unsupportedEncodingError(codings: string[]): AppError {
  const supported = `supported: ${SUPPORTED_CONTENT_ENCODINGS.join(', ')} or none`
  const message =
    codings.length > 1
      ? `Content-Encoding ${JSON.stringify(codings.join(', '))} applies more than one coding; send at most one (${supported})`
      : `Content-Encoding ${JSON.stringify(codings[0])} is not supported (${supported})`

  return new AppError('IOTM_ERR_BODY_UNSUPPORTED_ENCODING', message, { field: 'content-encoding' })
}

/**
 * Pipes the request through the decompressor, if any, into a stream that
 * applies the body limit, and hands that stream to Fastify as the body.
 */
function streamBody(
  request: FastifyRequest,
  reply: FastifyReply,
  raw: IncomingMessage,
  coding: string | undefined,
  done: (error: Error | null, payload?: RequestPayload) => void,
): void {
  const limit = request.routeOptions.bodyLimit
  const decompressor = coding === undefined ? undefined : DECOMPRESSORS.get(coding)?.()
  const decoded = new DecodedBodyStream(limit, () => {
    // Stop the decompressor now, not when the error event arrives, so it
    // produces no further output chunk.
    stopReading()
    logLimitExceeded()
    return tooLargeError(request, limit, decompressor !== undefined)
  })

  function logLimitExceeded(): void {
    request.log.info(
      {
        encoding: coding ?? 'identity',
        limit,
        decodedBytes: decoded.decodedLength,
        receivedBytes: decoded.receivedEncodedLength,
      },
      'request body passed the limit; stopped reading it',
    )
  }

  function stopReading(): void {
    raw.unpipe(decompressor ?? decoded)
    decompressor?.destroy()
    // Read and discard the rest of the request, so the connection can carry
    // the reply and the next request; the request timeout bounds how long.
    raw.resume()
  }

  raw.on('data', (chunk: Buffer) => {
    decoded.receivedEncodedLength += chunk.length
    // A chunked upload has no Content-Length to check up front.
    if (decoded.receivedEncodedLength > limit && !decoded.destroyed) {
      stopReading()
      logLimitExceeded()
      decoded.destroy(tooLargeError(request, limit, false))
    }
  })
  // Fastify listens for errors only while it reads the body. An error after
  // that, or on a body no parser reads (an unsupported Content-Type), must
  // not become an uncaught exception.
  decoded.on('error', () => {})

  if (decompressor === undefined) {
    raw.pipe(decoded)
  } else {
    decompressor.on('error', (error: Error) => {
      stopReading()
      decoded.destroy(
        new AppError(
          'IOTM_ERR_BODY_INVALID_ENCODING',
          `request body is not valid ${coding} data: ${error.message}`,
          { field: 'content-encoding', cause: error },
        ),
      )
    })
    raw.pipe(decompressor).pipe(decoded)
  }

  // Frees the decompressor once the reply is sent or the client goes away.
  reply.raw.once('close', stopReading)
  done(null, decoded)
}

/**
 * Creates a route `preParsing` hook that decompresses a body sent with
 * Content-Encoding and applies the route's body limit to the decompressed
 * bytes while they stream, so a small compressed body cannot make the server
 * allocate its full expansion. The hook runs after the token check
 * (`onRequest`), so no anonymous body is decompressed.
 *
 * With `limitUncompressed`, a body without Content-Encoding that is over the
 * limit also gets a 413 that names the limit. Without it, such a body is left
 * to Fastify, which rejects it with its generic 413.
 */
export function createBodyDecoder(options: { limitUncompressed: boolean }) {
  return (
    request: FastifyRequest,
    reply: FastifyReply,
    payload: RequestPayload,
    done: (error: Error | null, payload?: RequestPayload) => void,
  ): void => {
    // The common case of POST /metrics, kept to one comparison.
    if (request.headers['content-encoding'] === undefined && !options.limitUncompressed) {
      done(null, payload)
      return
    }

    const limit = request.routeOptions.bodyLimit
    const codings = parseContentEncoding(request.headers['content-encoding'])
    const contentLength = Number(request.headers['content-length'])
    if (codings.length === 0 && !options.limitUncompressed) {
      done(null, payload)
      return
    }
    // The declared size is checked before anything is read.
    if (contentLength > limit) {
      done(tooLargeError(request, limit, false))
      return
    }
    if (codings.length > 1 || (codings.length === 1 && !DECOMPRESSORS.has(codings[0] as string))) {
      done(unsupportedEncodingError(codings))
      return
    }
    // Fastify checks that an uncompressed body has exactly its Content-Length.
    if (codings.length === 0 && !Number.isNaN(contentLength)) {
      done(null, payload)
      return
    }

    streamBody(request, reply, payload as IncomingMessage, codings[0], done)
  }
}
