/** Entry of a demo writer child process: config as JSON in argv[2], progress over IPC. */
import { runWriter, type WriterConfig } from './writer.js'

const cfg = JSON.parse(process.argv[2] ?? '{}') as WriterConfig
let last = 0
runWriter(cfg, (p) => {
  const now = performance.now()
  if (now - last > 50 || p.committed === cfg.updates) {
    last = now
    process.send?.({ type: 'progress', progress: p })
  }
}).then(
  (p) => {
    process.send?.({ type: 'done', progress: p }, () => process.exit(0))
  },
  (err: unknown) => {
    process.send?.({ type: 'error', message: String((err as Error)?.stack ?? err) }, () => process.exit(1))
  },
)
