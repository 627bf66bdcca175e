import { AppError } from './errors.js'

// Cursors are opaque to clients: base64url of a small JSON object whose
// single-letter keys name the listing it belongs to.

export function encodeCursor(position: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(position)).toString('base64url')
}

/**
 * Decodes a cursor and checks that it carries exactly the expected keys with
 * the expected types; anything else is a 400 naming the `cursor` parameter.
 */
export function decodeCursor<Position extends Record<string, string | number>>(
  cursor: string,
  shape: { [Key in keyof Position]: 'string' | 'number' },
): Position {
  const invalid = new AppError(
    'IOTM_ERR_QUERY_INVALID_CURSOR',
    'cursor is not valid here; pass the next_cursor of the previous page of this listing unchanged',
    { field: 'cursor' },
  )

  let value: unknown
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
  } catch {
    throw invalid
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid
  }

  const keys = Object.keys(shape)
  const record = value as Record<string, unknown>
  if (Object.keys(record).length !== keys.length) {
    throw invalid
  }
  for (const key of keys) {
    if (typeof record[key] !== shape[key as keyof Position]) {
      throw invalid
    }
  }

  return record as Position
}
