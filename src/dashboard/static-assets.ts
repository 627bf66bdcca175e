import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

/** One built front-end file, kept in memory with its gzipped form. */
export interface StaticAsset {
  body: Buffer
  gzipped: Buffer
  contentType: string
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
}

/** Folder where `npm run build` writes the bundled front end: dist/web beside dist/src. */
export const DEFAULT_ASSET_DIR = fileURLToPath(new URL('../../web/', import.meta.url))

/**
 * Loads the built front end into memory. Returns an empty map when the folder
 * does not exist, so the API still works in a build without the front end.
 */
export function loadStaticAssets(dir: string = DEFAULT_ASSET_DIR): Map<string, StaticAsset> {
  const assets = new Map<string, StaticAsset>()
  if (!existsSync(dir)) {
    return assets
  }

  for (const name of readdirSync(dir)) {
    const contentType = CONTENT_TYPES[extname(name)]
    if (contentType === undefined) {
      continue
    }
    const body = readFileSync(join(dir, name))
    assets.set(name, { body, gzipped: gzipSync(body, { level: 9 }), contentType })
  }

  return assets
}
