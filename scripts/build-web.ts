// Bundles the dashboard front end (web/) into dist/web with esbuild: one
// minified script, one stylesheet, both named by content hash so they can
// be cached forever, and index.html pointing at them.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { build } from 'esbuild'

const SOURCE_DIR = 'web'
const OUT_DIR = join('dist', 'web')

async function main(): Promise<void> {
  rmSync(OUT_DIR, { recursive: true, force: true })
  mkdirSync(OUT_DIR, { recursive: true })

  const result = await build({
    entryPoints: [join(SOURCE_DIR, 'app.ts')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2022'],
    outdir: OUT_DIR,
    entryNames: 'app-[hash]',
    metafile: true,
    legalComments: 'none',
    logLevel: 'warning',
  })

  const outputs = Object.keys(result.metafile.outputs).map((path) => basename(path))
  const script = outputs.find((name) => name.endsWith('.js'))
  const stylesheet = outputs.find((name) => name.endsWith('.css'))
  if (script === undefined || stylesheet === undefined) {
    throw new Error(`esbuild wrote ${outputs.join(', ')}; expected one .js and one .css file`)
  }

  const page = readFileSync(join(SOURCE_DIR, 'index.html'), 'utf8')
    .replace('{{JS}}', script)
    .replace('{{CSS}}', stylesheet)
  writeFileSync(join(OUT_DIR, 'index.html'), page)
}

await main()
