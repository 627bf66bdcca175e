import pino, { type DestinationStream, type Logger } from 'pino'

/**
 * Creates the JSON logger. Request logging never includes headers, and the
 * redaction below is a second guard should a header object reach a log call.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'iot-metrics' },
    redact: {
      paths: [
        'req.headers.authorization',
        'request.headers.authorization',
        'headers.authorization',
        'authorization',
        'token',
      ],
      censor: '[redacted]',
    },
  }

  return destination === undefined ? pino(options) : pino(options, destination)
}
