/**
 * Counts failed sign-ins per user name and per client address in a sliding
 * window, and blocks further attempts for a key once it reaches its limit.
 * The counts live in memory, so a restart clears them.
 */
export interface SignInThrottle {
  /** Seconds until the user or the address may try again; 0 when an attempt is allowed. */
  retryAfterSeconds(username: string, ip: string): number
  recordFailure(username: string, ip: string): void
  /** Clears the user's failures after a successful sign-in; the address keeps its count. */
  recordSuccess(username: string): void
}

export interface SignInThrottleOptions {
  /** Failed attempts per user name within the window before it is blocked. */
  maxFailuresPerUser: number
  /** Failed attempts per client address within the window before it is blocked. */
  maxFailuresPerAddress: number
  windowMs: number
  now?: () => number
}

export const DEFAULT_THROTTLE_OPTIONS: SignInThrottleOptions = {
  maxFailuresPerUser: 5,
  maxFailuresPerAddress: 20,
  windowMs: 15 * 60_000,
}

// Keys kept at most; beyond it the oldest are dropped, so a flood of invented
// user names cannot grow memory without bound.
const MAX_TRACKED_KEYS = 100_000

export function createSignInThrottle(
  options: SignInThrottleOptions = DEFAULT_THROTTLE_OPTIONS,
): SignInThrottle {
  const now = options.now ?? Date.now
  // Failure times per key, oldest first; a Map keeps insertion order for eviction.
  const failures = new Map<string, number[]>()

  function recentFailures(key: string, at: number): number[] {
    const times = failures.get(key)
    if (times === undefined) {
      return []
    }

    const recent = times.filter((time) => at - time < options.windowMs)
    if (recent.length === 0) {
      failures.delete(key)
    } else {
      failures.set(key, recent)
    }
    return recent
  }

  function waitSeconds(key: string, limit: number, at: number): number {
    const recent = recentFailures(key, at)
    if (recent.length < limit) {
      return 0
    }

    // Blocked until the oldest failure that still counts leaves the window.
    const oldest = recent[recent.length - limit] as number
    return Math.max(1, Math.ceil((oldest + options.windowMs - at) / 1000))
  }

  function record(key: string, at: number): void {
    const recent = recentFailures(key, at)
    failures.delete(key)
    failures.set(key, [...recent, at])
    if (failures.size > MAX_TRACKED_KEYS) {
      const oldestKey = failures.keys().next().value
      if (oldestKey !== undefined) {
        failures.delete(oldestKey)
      }
    }
  }

  return {
    retryAfterSeconds(username, ip) {
      const at = now()
      return Math.max(
        waitSeconds(`user:${username}`, options.maxFailuresPerUser, at),
        waitSeconds(`ip:${ip}`, options.maxFailuresPerAddress, at),
      )
    },

    recordFailure(username, ip) {
      const at = now()
      record(`user:${username}`, at)
      record(`ip:${ip}`, at)
    },

    recordSuccess(username) {
      failures.delete(`user:${username}`)
    },
  }
}
