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

  // Buffered, asynchronous writes to stdout: lines are written once 8 KiB
  // have gathered or 200 ms have passed, so under load one write(2) carries
  // dozens of request lines instead of one. pino flushes the buffer
  // synchronously when the process exits, process.exit() included.
  const stdout = pino.destination({ dest: 1, sync: false, minLength: 8192, periodicFlush: 200 })

  return pino(options, destination ?? stdout)
}
