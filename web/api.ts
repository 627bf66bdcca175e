// The dashboard's JSON API, with the session's CSRF token on every change.

export interface AccountCard {
  account_id: string
  plan: 'standard' | 'enterprise'
  plan_name: string
  device_limit: number
  devices: number
  seats_available: number
  overage: number
  at_limit: boolean
  over_limit: boolean
  logins: number
  last_login: string | null
}

export interface AccountDetail extends AccountCard {
  logins_per_hour: { first_hour: string; counts: number[] }
  recent_devices: { user_id: string; logins: number; first_login: string; last_login: string }[]
  plan_changes: { from_plan: string; to_plan: string; changed_by: string; changed_at: string }[]
}

export interface SessionInfo {
  username: string
  csrf_token: string
  idle_timeout_seconds: number
}

export interface PlanInfo {
  id: 'standard' | 'enterprise'
  name: string
  device_limit: number
}

/** An error reply of the API, with its stable code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

let csrfToken = ''

export function setCsrfToken(token: string): void {
  csrfToken = token
}

/** Listener for replies that say the session is gone; the page returns to sign-in. */
let onSessionLost: (message: string) => void = () => {}

export function handleSessionLost(listener: (message: string) => void): void {
  onSessionLost = listener
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (body !== undefined) {
    headers['content-type'] = 'application/json'
  }
  if (method !== 'GET') {
    headers['x-csrf-token'] = csrfToken
  }

  const response = await fetch(`/dashboard/api${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const data = await response.json().catch(() => ({}))
  if (!response.ok) {
    const error = new ApiError(
      response.status,
      String(data.code ?? 'UNKNOWN'),
      String(data.message ?? response.statusText),
    )
    if (
      error.code === 'IOTM_ERR_DASHBOARD_SESSION_EXPIRED' ||
      error.code === 'IOTM_ERR_DASHBOARD_SESSION_REQUIRED'
    ) {
      if (path !== '/session' || method !== 'GET') {
        onSessionLost(error.message)
      }
    }
    throw error
  }
  return data as T
}
