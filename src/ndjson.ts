import { findDuplicateKey } from './duplicate-keys.js'
import { AppError } from './errors.js'

/** One non-blank line of an NDJSON body with its 1-based line number. */
export interface NdjsonLine {
  line: number
  text: string
}

/** One parsed NDJSON line: its value, or the error that makes it unusable. */
export interface NdjsonRecord {
  line: number
  value?: unknown
  error?: AppError
}

/**
 * Splits an NDJSON body into its non-blank lines. Lines end with LF or CRLF
 * (the NDJSON spec allows both), and blank lines, a trailing newline
 * included, are skipped but still counted for the line numbers.
 */
export function splitNdjson(text: string): NdjsonLine[] {
  const lines: NdjsonLine[] = []
  let start = 0
  let number = 1
  while (start <= text.length) {
    let end = text.indexOf('\n', start)
    if (end === -1) {
      end = text.length
    }
    const content = text.slice(start, end).replace(/\r$/, '')
    if (content.trim() !== '') {
      lines.push({ line: number, text: content })
    }
    start = end + 1
    number++
  }

  return lines
}

/** Parses one NDJSON line; malformed JSON or a repeated key becomes the record's error, naming the line. */
export function parseNdjsonLine({ line, text }: NdjsonLine): NdjsonRecord {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return {
      line,
      error: new AppError(
        'IOTM_ERR_BODY_INVALID_JSON',
        `line ${line} is not valid JSON: ${(error as Error).message}`,
      ),
    }
  }

  // The same rule as POST /metrics: a repeated key would mean different
  // things to different parsers, so the line is rejected.
  const duplicate = findDuplicateKey(text)
  if (duplicate !== undefined) {
    return {
      line,
      error: new AppError(
        'IOTM_ERR_BODY_DUPLICATE_KEY',
        `line ${line}: JSON key ${JSON.stringify(duplicate)} appears more than once in one object; send each field once`,
        { field: duplicate },
      ),
    }
  }

  return { line, value }
}
