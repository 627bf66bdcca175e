interface Container {
  keys: Set<string> | undefined
  expectingKey: boolean
}

/**
 * Returns the first key that appears twice in one object of a JSON text, or
 * undefined. `JSON.parse` silently keeps the last of duplicate keys, so a body
 * such as `{"user_id":"a","user_id":"b"}` would mean different things to
 * different parsers on its way. Keys are compared after unescaping, so `"a"`
 * and `"\u0061"` are the same key. Call it only on text `JSON.parse` accepted.
 */
export function findDuplicateKey(text: string): string | undefined {
  const stack: Container[] = []
  let index = 0
  while (index < text.length) {
    const char = text[index]
    const top = stack[stack.length - 1]

    if (char === '"') {
      const end = endOfString(text, index)
      if (top?.keys !== undefined && top.expectingKey) {
        const key = JSON.parse(text.slice(index, end)) as string
        if (top.keys.has(key)) {
          return key
        }
        top.keys.add(key)
        top.expectingKey = false
      }
      index = end
      continue
    }

    if (char === '{') {
      stack.push({ keys: new Set(), expectingKey: true })
    } else if (char === '[') {
      stack.push({ keys: undefined, expectingKey: false })
    } else if (char === '}' || char === ']') {
      stack.pop()
    } else if (char === ',' && top?.keys !== undefined) {
      top.expectingKey = true
    }
    index++
  }

  return undefined
}

/** Returns the index just past the string literal that starts at `start`. */
function endOfString(text: string, start: number): number {
  let index = start + 1
  while (index < text.length) {
    const char = text[index]
    if (char === '\\') {
      index += 2
    } else if (char === '"') {
      return index + 1
    } else {
      index++
    }
  }

  return index
}
