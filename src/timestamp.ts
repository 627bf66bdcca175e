import { AppError } from './errors.js'

// Timestamps travel as RFC 3339 strings and are stored as integer
// nanoseconds since the Unix epoch. JavaScript's Date keeps milliseconds
// only, so neither direction goes through it.

const NANOS_PER_SECOND = 1_000_000_000n
const SECONDS_PER_DAY = 86_400

/** The earliest storable instant: the Unix epoch. */
export const MIN_TIMESTAMP_NS = 0n
/** The latest storable instant: the largest signed 64-bit integer, in 2262. */
export const MAX_TIMESTAMP_NS = 9_223_372_036_854_775_807n

const RANGE_TEXT = '1970-01-01T00:00:00Z to 2262-04-11T23:47:16.854775807Z'

// RFC 3339, section 5.6: full-date "T" full-time, where "T" and "Z" may be
// lower case and time-secfrac has at least one digit. We accept at most nine
// fraction digits because nanoseconds are what we store.
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/

function invalid(field: string, value: string, problem: string): AppError {
  return new AppError(
    'IOTM_ERR_TIMESTAMP_INVALID',
    `${field} ${JSON.stringify(value)} is not a valid RFC 3339 date-time: ${problem}`,
    { field },
  )
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) {
    return isLeapYear(year) ? 29 : 28
  }

  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/** Counts days from 1970-01-01 to a proleptic Gregorian date (the days_from_civil algorithm). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year
  const era = Math.floor(y / 400)
  const yearOfEra = y - era * 400
  const monthIndex = month > 2 ? month - 3 : month + 9
  const dayOfYear = Math.floor((153 * monthIndex + 2) / 5) + day - 1
  const dayOfEra =
    yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear

  return era * 146_097 + dayOfEra - 719_468
}

/** Converts a day count since 1970-01-01 back to year, month and day (civil_from_days). */
function civilFromDays(days: number): [number, number, number] {
  const z = days + 719_468
  const era = Math.floor(z / 146_097)
  const dayOfEra = z - era * 146_097
  const yearOfEra = Math.floor(
    (dayOfEra -
      Math.floor(dayOfEra / 1460) +
      Math.floor(dayOfEra / 36_524) -
      Math.floor(dayOfEra / 146_096)) /
      365,
  )
  const dayOfYear =
    dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100))
  const monthIndex = Math.floor((5 * dayOfYear + 2) / 153)
  const day = dayOfYear - Math.floor((153 * monthIndex + 2) / 5) + 1
  const month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)

  return [year, month, day]
}

/**
 * Parses an RFC 3339 date-time into integer nanoseconds since the Unix epoch.
 * Throws an AppError naming `field` and the problem for a malformed or unstorable value.
 */
export function parseTimestamp(value: string, field = 'timestamp'): bigint {
  const match = RFC3339.exec(value)
  if (match === null) {
    return shapeError(field, value)
  }

  // Fields of the match, in the order of the expression's groups.
  const [
    ,
    yearText,
    monthText,
    dayText,
    hourText,
    minuteText,
    secondText,
    fraction,
    zulu,
    sign,
    offsetHourText,
    offsetMinuteText,
  ] = match as unknown as string[]
  const year = Number(yearText)
  const month = Number(monthText)
  const day = Number(dayText)
  const hour = Number(hourText)
  const minute = Number(minuteText)
  const second = Number(secondText)

  if (month < 1 || month > 12) {
    throw invalid(field, value, `month ${monthText} is not between 01 and 12`)
  }
  if (day < 1 || day > daysInMonth(year, month)) {
    throw invalid(field, value, `day ${dayText} does not exist in ${yearText}-${monthText}`)
  }
  if (hour > 23) {
    throw invalid(field, value, `hour ${hourText} is not between 00 and 23`)
  }
  if (minute > 59) {
    throw invalid(field, value, `minute ${minuteText} is not between 00 and 59`)
  }
  if (second === 60) {
    throw invalid(field, value, 'leap seconds (second 60) cannot be stored; send 59 instead')
  }
  if (second > 59) {
    throw invalid(field, value, `second ${secondText} is not between 00 and 59`)
  }
  if (fraction !== undefined && fraction.length > 9) {
    throw invalid(
      field,
      value,
      `the fraction has ${fraction.length} digits; at most 9 (nanoseconds) are allowed`,
    )
  }

  let offsetSeconds = 0
  if (zulu === undefined) {
    const offsetHour = Number(offsetHourText)
    const offsetMinute = Number(offsetMinuteText)
    if (offsetHour > 23 || offsetMinute > 59) {
      throw invalid(
        field,
        value,
        `offset ${sign}${offsetHourText}:${offsetMinuteText} is out of range`,
      )
    }
    offsetSeconds = (sign === '-' ? -1 : 1) * (offsetHour * 3600 + offsetMinute * 60)
  }

  // Whole seconds stay exact in a double far beyond year 2262.
  const seconds =
    daysFromCivil(year, month, day) * SECONDS_PER_DAY +
    hour * 3600 +
    minute * 60 +
    second -
    offsetSeconds
  const nanos = fraction === undefined ? 0n : BigInt(fraction.padEnd(9, '0'))
  const total = BigInt(seconds) * NANOS_PER_SECOND + nanos

  if (total < MIN_TIMESTAMP_NS || total > MAX_TIMESTAMP_NS) {
    throw new AppError(
      'IOTM_ERR_TIMESTAMP_OUT_OF_RANGE',
      `${field} ${JSON.stringify(value)} is outside the storable range ${RANGE_TEXT}`,
      { field },
    )
  }

  return total
}

function shapeError(field: string, value: string): never {
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
    throw invalid(field, value, 'the time of day and the offset are missing')
  }
  if (/^\d{4}-\d{2}-\d{2} \d/.test(value)) {
    throw invalid(field, value, 'date and time must be separated by "T"')
  }
  if (/^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?$/.test(value)) {
    throw invalid(
      field,
      value,
      'the offset is missing; end with "Z" or a numeric offset such as "+02:00"',
    )
  }

  throw invalid(field, value, 'expected the form 2019-03-03T18:02:30.424878129Z')
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0')
}

/**
 * Formats integer nanoseconds since the Unix epoch as an RFC 3339 date-time
 * in UTC, dropping trailing zeros of the fraction the way Go's RFC3339Nano does.
 */
export function formatTimestamp(nanos: bigint): string {
  const seconds = Number(nanos / NANOS_PER_SECOND)
  const fraction = Number(nanos % NANOS_PER_SECOND)
  const days = Math.floor(seconds / SECONDS_PER_DAY)
  const secondOfDay = seconds - days * SECONDS_PER_DAY
  const [year, month, day] = civilFromDays(days)

  const hour = Math.floor(secondOfDay / 3600)
  const minute = Math.floor((secondOfDay % 3600) / 60)
  const second = secondOfDay % 60

  let text = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}`
  if (fraction !== 0) {
    text += `.${pad(fraction, 9).replace(/0+$/, '')}`
  }

  return `${text}Z`
}
