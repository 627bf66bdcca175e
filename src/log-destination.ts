import { write, writeSync } from 'node:fs'

export interface LogDestinationOptions {
  /** File descriptor the lines go to, 1 for stdout. */
  fd: number
  /** Buffered bytes that start a write before the flush interval ends. */
  minLength?: number
  /** Unwritten bytes past which new lines are dropped and counted. */
  maxBufferedBytes?: number
  /** Maximum time a line waits in the buffer while no write is running. */
  flushIntervalMs?: number
  /** Called with the number of lines dropped since the last call, once the buffer has room again. */
  onDropped?: (lines: number) => void
  /**
   * Maximum bytes of one write(2), cut at line ends; a longer line is
   * written alone. Writes of at most PIPE_BUF bytes (4096 on Linux) to a
   * pipe are atomic, so processes that share one stdout pipe, as cluster
   * workers do, then never interleave parts of their lines. Unset, each
   * write carries the whole buffer.
   */
  maxWriteBytes?: number
}

export interface LogDestination {
  /** Buffers one log line, or drops it when the buffer is full. */
  write(line: string): boolean
  /** Writes every buffered line before returning, for process exit. */
  flushSync(): void
  /** Stops the flush timer after writing what is buffered. */
  end(): void
}

const DEFAULT_MIN_LENGTH = 8192
const DEFAULT_MAX_BUFFERED_BYTES = 16 * 1024 * 1024
const DEFAULT_FLUSH_INTERVAL_MS = 200

// A write to a full non-blocking pipe fails with EAGAIN and is tried again after this pause.
const EAGAIN_RETRY_MS = 10
// flushSync gives up on a pipe that stays full this long, so that exit cannot hang.
const SYNC_EAGAIN_LIMIT_MS = 1000

const SLEEP = new Int32Array(new SharedArrayBuffer(4))

/**
 * Creates a buffered, asynchronous log destination for pino. Each write(2)
 * carries everything gathered while the previous one ran, so a busy event
 * loop writes larger chunks rather than falling behind. Memory is bounded:
 * past `maxBufferedBytes` of unwritten output, lines are dropped and counted,
 * and `onDropped` reports the count once writes catch up.
 */
export function createLogDestination(options: LogDestinationOptions): LogDestination {
  const minLength = options.minLength ?? DEFAULT_MIN_LENGTH
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES
  const { fd, onDropped, maxWriteBytes } = options

  // Unwritten lines are lines[head..] with their sizes in lineBytes, so that
  // taking a few from the front does not copy the rest.
  let lines: string[] = []
  let lineBytes: number[] = []
  let head = 0
  let bufferedBytes = 0
  let writing = false
  let droppedLines = 0
  // Set on EPIPE, when the reader has closed the pipe. Later lines are discarded.
  let closed = false

  function takeBuffer(): Buffer {
    if (maxWriteBytes === undefined) {
      const chunk = Buffer.from(head === 0 ? lines.join('') : lines.slice(head).join(''))
      lines = []
      lineBytes = []
      head = 0
      bufferedBytes = 0

      return chunk
    }

    let end = head
    let bytes = 0
    while (end < lines.length) {
      const size = lineBytes[end] as number
      if (end > head && bytes + size > maxWriteBytes) {
        break
      }
      bytes += size
      end++
    }
    const chunk = Buffer.from(lines.slice(head, end).join(''))
    head = end
    bufferedBytes -= bytes
    if (head === lines.length) {
      lines = []
      lineBytes = []
      head = 0
    } else if (head > 1024 && head * 2 > lines.length) {
      lines = lines.slice(head)
      lineBytes = lineBytes.slice(head)
      head = 0
    }

    return chunk
  }

  function writeChunk(chunk: Buffer): void {
    write(fd, chunk, 0, chunk.length, null, (error, written) => {
      if (error !== null) {
        handleWriteError(error, chunk)
        return
      }
      if (written < chunk.length) {
        writeChunk(chunk.subarray(written))
        return
      }

      writing = false
      reportDrops()
      // With maxWriteBytes, lines left from a cut buffer were due already.
      if (bufferedBytes >= minLength || (maxWriteBytes !== undefined && bufferedBytes > 0)) {
        startWrite()
      }
    })
  }

  function handleWriteError(error: NodeJS.ErrnoException, chunk: Buffer): void {
    if (error.code === 'EAGAIN') {
      setTimeout(() => writeChunk(chunk), EAGAIN_RETRY_MS).unref()
      return
    }

    writing = false
    if (error.code === 'EPIPE') {
      closed = true
      lines = []
      lineBytes = []
      head = 0
      bufferedBytes = 0
      return
    }
    // Another failure (a full disk, a revoked file) loses this chunk only,
    // and the next write tries again. The count reaches the log once a write succeeds.
    droppedLines += countLines(chunk)
  }

  function startWrite(): void {
    if (writing || closed || bufferedBytes === 0) {
      return
    }
    writing = true
    writeChunk(takeBuffer())
  }

  function reportDrops(): void {
    if (droppedLines === 0 || onDropped === undefined) {
      return
    }
    const count = droppedLines
    droppedLines = 0
    onDropped(count)
  }

  const timer = setInterval(startWrite, options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS)
  timer.unref()

  return {
    write(line) {
      if (closed) {
        return true
      }
      const bytes = Buffer.byteLength(line)
      if (bufferedBytes + bytes > maxBufferedBytes) {
        droppedLines++
        return false
      }

      lines.push(line)
      lineBytes.push(bytes)
      bufferedBytes += bytes
      if (bufferedBytes >= minLength) {
        startWrite()
      }

      return true
    },

    flushSync() {
      // A chunk whose asynchronous write is still running may be lost,
      // because the thread pool cannot be waited on here. The lines
      // buffered after it are written.
      const giveUpAt = Date.now() + SYNC_EAGAIN_LIMIT_MS
      while (!closed && bufferedBytes > 0) {
        let chunk = takeBuffer()
        while (chunk.length > 0) {
          try {
            chunk = chunk.subarray(writeSync(fd, chunk))
          } catch (error) {
            const code = (error as NodeJS.ErrnoException).code
            if (code !== 'EAGAIN' || Date.now() > giveUpAt) {
              return
            }
            Atomics.wait(SLEEP, 0, 0, EAGAIN_RETRY_MS)
          }
        }
      }
    },

    end() {
      clearInterval(timer)
      startWrite()
    },
  }
}

function countLines(chunk: Buffer): number {
  let count = 0
  for (let index = chunk.indexOf(10); index !== -1; index = chunk.indexOf(10, index + 1)) {
    count++
  }

  return count
}
