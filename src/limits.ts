/** Size limits of POST /metrics/batch, set by configuration. */
export interface BatchLimits {
  /** Maximum number of logins in one request. */
  maxLogins: number
  /** Maximum body size in bytes, after decompression. */
  maxBytes: number
}

export const DEFAULT_BATCH_MAX_LOGINS = 1000

/**
 * A login with the longest ids and timestamp the schema allows is 365 bytes
 * of JSON, so 1000 of them are about 366 KB. 1 MiB leaves room for
 * indentation and escaped characters. The worst body of that size, an array
 * of 350,000 empty objects, parses to about 22 MB on Node 20 before the
 * count check rejects it.
 */
export const DEFAULT_BATCH_MAX_BYTES = 1024 * 1024

export const DEFAULT_BATCH_LIMITS: BatchLimits = {
  maxLogins: DEFAULT_BATCH_MAX_LOGINS,
  maxBytes: DEFAULT_BATCH_MAX_BYTES,
}
