// The logins the load generators send: distinct (account, user, instant)
// triples over 1000 accounts of 10 users each, so every one is a new login.

const ACCOUNTS = 1000
const USERS_PER_ACCOUNT = 10
// 2019-03-03T18:02:30Z in nanoseconds; each login is one microsecond later.
const BASE_NS = 1_551_636_150_000_000_000n

function uuidOf(prefix: number, value: number): string {
  const hex = value.toString(16).padStart(12, '0')

  return `${prefix.toString(16).padStart(8, '0')}-0000-4000-8000-${hex}`
}

function formatNs(ns: bigint): string {
  const seconds = Number(ns / 1_000_000_000n)
  const fraction = (ns % 1_000_000_000n).toString().padStart(9, '0')

  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${fraction}Z`
}

/** Returns the JSON body of login number `index` of a generator with the given `seed`. */
export function loginBody(seed: number, index: number): string {
  const account = index % ACCOUNTS
  const user = Math.floor(index / ACCOUNTS) % USERS_PER_ACCOUNT
  const ts = BASE_NS + BigInt(seed) * 1_000_000_000_000n + BigInt(index) * 1000n

  return `{"account_id":"${uuidOf(0xacc, account)}","user_id":"${uuidOf(0xd0, account * USERS_PER_ACCOUNT + user)}","timestamp":"${formatNs(ts)}"}`
}
