import { type FSWatcher, readFileSync, watch } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { SecureContextOptions } from 'node:tls'
import type { Logger } from 'pino'
import { type TlsCertificateLoadedEvent, tlsCertificateLoaded } from './events.js'
import {
  EXPIRY_WARNING_DAYS,
  loadClientCa,
  loadTlsMaterial,
  type TlsMaterial,
  tlsServerOptions,
} from './tls.js'

/** Waits this long after a file event, so a cert and key written one after the other load together. */
const DEBOUNCE_MS = 200
const DAY_MS = 86_400_000

export interface TlsReloaderOptions {
  /** The HTTPS server; `setSecureContext` changes what new connections get, open ones keep theirs. */
  server: { setSecureContext(options: SecureContextOptions): void }
  certPath: string
  keyPath: string
  clientCaPath?: string | undefined
  /** The material the server started with. */
  initial: TlsMaterial
  logger: Logger
  /** Watch the files and reload when they change (default true). */
  watchFiles?: boolean
}

export interface TlsReloader {
  /** Loads the files again; returns false, logging why, when they are unusable and the old ones stay. */
  reload(trigger: string): boolean
  /** Expiry of the certificate being served. */
  validTo(): Date
  close(): void
}

function readQuietly(path: string | undefined): Buffer | undefined {
  if (path === undefined) {
    return undefined
  }
  try {
    return readFileSync(path)
  } catch {
    return undefined
  }
}

/**
 * Replaces the server certificate, key and client CA without a restart, on
 * request (SIGHUP) and when the files change. A new pair is checked first,
 * like at start (parseable, matching, currently valid); a bad one is logged
 * and the served certificate stays.
 */
export function createTlsReloader(options: TlsReloaderOptions): TlsReloader {
  const { logger, certPath, keyPath, clientCaPath } = options
  let current = options.initial
  let currentCa = readQuietly(clientCaPath)

  function announce(trigger: string): void {
    const daysToExpiry = Math.floor((current.validTo.getTime() - Date.now()) / DAY_MS)
    const fields = {
      certificate: certPath,
      validTo: current.validTo.toISOString(),
      daysToExpiry,
      trigger,
    }
    if (daysToExpiry < EXPIRY_WARNING_DAYS) {
      logger.warn(fields, 'the TLS certificate expires soon; replace it')
    } else {
      logger.info(fields, 'serving TLS certificate')
    }
    if (tlsCertificateLoaded.hasSubscribers) {
      const event: TlsCertificateLoadedEvent = {
        certificatePath: certPath,
        validTo: current.validTo,
        daysToExpiry,
        trigger,
      }
      tlsCertificateLoaded.publish(event)
    }
  }

  function reload(trigger: string): boolean {
    let material: TlsMaterial
    let clientCa: Buffer | undefined
    try {
      material = loadTlsMaterial(certPath, keyPath)
      clientCa = clientCaPath === undefined ? undefined : loadClientCa(clientCaPath)
      options.server.setSecureContext(tlsServerOptions(material, clientCa))
    } catch (error) {
      logger.error(
        { trigger, certificate: certPath, key: keyPath, err: error },
        'TLS reload failed; still serving the previous certificate',
      )
      return false
    }

    current = material
    currentCa = clientCa
    logger.info({ trigger, certificate: certPath }, 'TLS certificate reloaded')
    announce(trigger)

    return true
  }

  // Reload only when a file's bytes changed: editors, cert-manager and
  // Kubernetes secret volumes produce many events for one change, and some
  // events (a symlink swap) do not name our files.
  function changedOnDisk(): boolean {
    const cert = readQuietly(certPath)
    const key = readQuietly(keyPath)
    const ca = readQuietly(clientCaPath)

    return (
      cert === undefined ||
      key === undefined ||
      !cert.equals(current.cert) ||
      !key.equals(current.key) ||
      (clientCaPath !== undefined &&
        (ca === undefined || currentCa === undefined || !ca.equals(currentCa)))
    )
  }

  // Kubernetes secret volumes swap a `..data` symlink, so names starting
  // with `..` count too. Other files in the same folder (a database and its
  // WAL, say) are ignored.
  const watchedNames = new Set(
    [certPath, keyPath, clientCaPath].flatMap((path) =>
      path === undefined ? [] : [basename(path)],
    ),
  )
  let timer: NodeJS.Timeout | undefined
  const onFileEvent = (_event: string, filename: string | Buffer | null) => {
    const name = filename?.toString()
    if (name !== undefined && !watchedNames.has(name) && !name.startsWith('..')) {
      return
    }

    clearTimeout(timer)
    timer = setTimeout(() => {
      if (changedOnDisk()) {
        reload('file change')
      }
    }, DEBOUNCE_MS)
    timer.unref()
  }

  // Watching the folders, not the files, survives a file replaced by rename.
  const watchers: FSWatcher[] = []
  if (options.watchFiles !== false) {
    const paths = [certPath, keyPath, ...(clientCaPath === undefined ? [] : [clientCaPath])]
    for (const dir of new Set(paths.map((path) => dirname(path)))) {
      try {
        const watcher = watch(dir, { persistent: false }, onFileEvent)
        watcher.on('error', (error) =>
          logger.warn({ dir, err: error }, 'watching TLS files failed; reload with SIGHUP'),
        )
        watchers.push(watcher)
      } catch (error) {
        logger.warn({ dir, err: error }, 'cannot watch TLS files; reload with SIGHUP')
      }
    }
  }

  // A long-running server logs the remaining validity once a day.
  const daily = setInterval(() => announce('daily check'), DAY_MS)
  daily.unref()
  announce('start')

  return {
    reload,
    validTo: () => current.validTo,
    close() {
      clearTimeout(timer)
      clearInterval(daily)
      for (const watcher of watchers) {
        watcher.close()
      }
    },
  }
}
