import pino, { type DestinationStream, type Logger } from 'pino'
import { createLogDestination } from './log-destination.js'

// The size up to which POSIX makes a write to a pipe atomic; 4096 bytes on Linux.
const PIPE_BUF = 4096

export interface LoggerOptions {
  /** Whether other processes write to the same stdout, as with WORKERS=N. */
  sharedStdout?: boolean
}

/**
 * Creates the JSON logger. Request logging never includes headers, and the
 * redaction below is a second guard should a header object reach a log call.
 */
export function createLogger(
  level: string,
  destination?: DestinationStream,
  loggerOptions: LoggerOptions = {},
): Logger {
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

  if (destination !== undefined) {
    return pino(options, destination)
  }

  // Buffered, asynchronous writes to stdout: under load one write(2) carries
  // dozens of request lines instead of one, and a stdout slower than the
  // server costs dropped lines (counted in a warning) rather than memory.
  // The buffer is written synchronously when the process exits,
  // process.exit() included.
  const stdout = createLogDestination({
    fd: 1,
    // Writes of at most PIPE_BUF keep each process's lines whole where the
    // shared stdout is a pipe.
    ...(loggerOptions.sharedStdout === true ? { maxWriteBytes: PIPE_BUF } : {}),
    onDropped: (lines) => {
      logger.warn(
        { droppedLines: lines },
        `dropped ${lines} log lines because stdout did not keep up with the server`,
      )
    },
  })
  const logger: Logger = pino(options, stdout)
  process.once('exit', () => stdout.flushSync())

  return logger
}
