import type { IncomingMessage } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import * as zlib from 'node:zlib'
import type { FastifyReply, FastifyRequest, RequestPayload } from 'fastify'
import { AppError } from './errors.js'

type Decompressor = zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | Transform

// zstd arrived in Node 22.15 and 23.8; Node 20 has no zstd decompressor, so
// the coding is offered only when this runtime provides one.
const createZstdDecompress = (zlib as unknown as Record<string, unknown>).createZstdDecompress as
  | (() => Transform)
  | undefined

/** Decompressors by content-coding token; `deflate` is the zlib format (RFC 2616 section 3.5). */
const DECOMPRESSORS: ReadonlyMap<string, () => Decompressor> = new Map<string, () => Decompressor>([
  ['gzip', () => zlib.createGunzip()],
  // RFC 2616 section 3.5: applications should consider x-gzip equivalent to gzip.
  ['x-gzip', () => zlib.createGunzip()],
  ['deflate', () => zlib.createInflate()],
  ['br', () => zlib.createBrotliDecompress()],
  ...(createZstdDecompress === undefined
    ? []
    : [['zstd', () => createZstdDecompress()] as [string, () => Decompressor]]),
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
 * Counts the bytes that leave the decompressor and fails as soon as they pass
 * the limit. `receivedEncodedLength` is the count of bytes received on the
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
 * Decompresses a body sent with Content-Encoding and applies the route's body
 * limit to the decompressed bytes while they stream, so a small compressed
 * body cannot make the server allocate its full expansion. Used as a route
 * `preParsing` hook, it runs after the token check (`onRequest`), so no
 * anonymous body is decompressed. Fastify itself enforces the limit on a body
 * without Content-Encoding.
 */
export function decodeRequestBody(
  request: FastifyRequest,
  reply: FastifyReply,
  payload: RequestPayload,
  done: (error: Error | null, payload?: RequestPayload) => void,
): void {
  const limit = request.routeOptions.bodyLimit
  const codings = parseContentEncoding(request.headers['content-encoding'])
  const contentLength = Number(request.headers['content-length'])

  // Checked here, before anything is read, so the reply names the limit.
  if (contentLength > limit) {
    done(tooLargeError(request, limit, false))
    return
  }
  if (codings.length === 0) {
    done(null, payload)
    return
  }

  const coding = codings[0] as string
  const createDecompressor = DECOMPRESSORS.get(coding)
  if (codings.length > 1 || createDecompressor === undefined) {
    done(unsupportedEncodingError(codings))
    return
  }

  const raw = payload as IncomingMessage
  const decompressor = createDecompressor()
  const decoded = new DecodedBodyStream(limit, () => {
    // Stop the decompressor now, not when the error event arrives, so it
    // produces no further output chunk.
    stopDecoding()
    logLimitExceeded()
    return tooLargeError(request, limit, true)
  })

  function logLimitExceeded(): void {
    request.log.info(
      {
        encoding: coding,
        limit,
        decodedBytes: decoded.decodedLength,
        receivedBytes: decoded.receivedEncodedLength,
      },
      'request body passed the limit; decompression stopped',
    )
  }

  function stopDecoding(): void {
    raw.unpipe(decompressor)
    decompressor.destroy()
    // Read and discard the rest of the request, so the connection can carry
    // the reply and the next request; the request timeout bounds how long.
    raw.resume()
  }

  raw.on('data', (chunk: Buffer) => {
    decoded.receivedEncodedLength += chunk.length
    // A chunked upload has no Content-Length to check up front.
    if (decoded.receivedEncodedLength > limit && !decoded.destroyed) {
      stopDecoding()
      logLimitExceeded()
      decoded.destroy(tooLargeError(request, limit, false))
    }
  })
  decompressor.on('error', (error: Error) => {
    stopDecoding()
    decoded.destroy(
      new AppError(
        'IOTM_ERR_BODY_INVALID_ENCODING',
        `request body is not valid ${coding} data: ${error.message}`,
        { field: 'content-encoding', cause: error },
      ),
    )
  })
  raw.pipe(decompressor).pipe(decoded)

  // Frees the decompressor when the client goes away in the middle of the upload.
  reply.raw.once('close', () => decompressor.destroy())
  done(null, decoded)
}
