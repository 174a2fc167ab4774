#!/usr/bin/env node
import('../dist/esm/cli/main.js').then((m) => m.main(process.argv.slice(2))).then(
  (code) => {
    process.exitCode = code
  },
  (err) => {
    console.error(`memcached-lock: ${err?.message ?? err}`)
    process.exitCode = 70
  },
)
