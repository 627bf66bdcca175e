export interface RepeatLimiter {
  /**
   * Records one occurrence of `key`. Returns how many occurrences were held
   * back since the last one let through, or undefined when this one is held back.
   */
  admit(key: string): number | undefined
}

/**
 * Creates a limiter that lets the first occurrence of each key through, then
 * at most one per `intervalMs`. A flood of one warning, such as every request
 * shed by a full queue, then costs one log line per interval and a count.
 */
export function createRepeatLimiter(
  intervalMs: number,
  now: () => number = Date.now,
): RepeatLimiter {
  const windows = new Map<string, { nextAt: number; heldBack: number }>()

  return {
    admit(key) {
      const time = now()
      const window = windows.get(key)
      if (window === undefined) {
        windows.set(key, { nextAt: time + intervalMs, heldBack: 0 })
        return 0
      }
      if (time < window.nextAt) {
        window.heldBack++
        return undefined
      }

      const heldBack = window.heldBack
      window.nextAt = time + intervalMs
      window.heldBack = 0

      return heldBack
    },
  }
}
