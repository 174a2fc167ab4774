#!/usr/bin/env node
// Builds dist/esm (import) and dist/cjs (require), each with type declarations.
import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
rmSync(path.join(root, 'dist'), { recursive: true, force: true })
for (const project of ['tsconfig.build.json', 'tsconfig.cjs.json']) {
  const r = spawnSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) {
    console.error(`build failed: tsc -p ${project}`)
    process.exit(r.status ?? 1)
  }
}
mkdirSync(path.join(root, 'dist', 'cjs'), { recursive: true })
writeFileSync(path.join(root, 'dist', 'cjs', 'package.json'), '{ "type": "commonjs" }\n')
writeFileSync(path.join(root, 'dist', 'esm', 'package.json'), '{ "type": "module" }\n')
