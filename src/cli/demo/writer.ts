/**
 * One demo writer: `updates` read-modify-write cycles of the hot object, each with `workMs` of
 * work between read and commit (the expensive change), either optimistic only (retry on
 * conflict) or through the writer serializer. Reports progress through `report`.
 */
import { Locks, MemoryStore, type Serializer } from '../../index.js'
import { MemcachedHotObject, MemoryHotObject, VersionConflictError, type OptimisticStore } from './hot-object.js'

export interface WriterConfig {
  readonly mode: 'optimistic' | 'serialized'
  readonly updates: number
  readonly workMs: number
  readonly work: 'cpu' | 'io'
  /** memcached servers, or null for the in-process memory backend. */
  readonly servers: string | null
  readonly objectName: string
  /** Loop iterations per ms of CPU work, measured once by the parent so every writer does the same work. */
  readonly iterationsPerMs: number
}

export interface WriterProgress {
  committed: number
  conflicts: number
  wastedMs: number
  lockWaits: number
  unlocked: number
}

/** I/O-like work sleeps; CPU-bound work is a fixed amount of computation (it takes longer when cores are shared). */
export async function doWork(kind: 'cpu' | 'io', ms: number, iterationsPerMs: number): Promise<void> {
  if (kind === 'io') {
    await new Promise((r) => setTimeout(r, ms))
    return
  }
  spin(Math.round(ms * iterationsPerMs))
}

let sink = 0
function spin(iterations: number): void {
  let x = sink
  for (let i = 0; i < iterations; i++) x += Math.sqrt(x + i)
  sink = x % 1000
}

/** How many {@link spin} iterations take 1 ms on this machine, now. */
export function calibrate(): number {
  spin(200_000)
  let best = 0
  for (let r = 0; r < 5; r++) {
    const t = performance.now()
    spin(100_000)
    best = Math.max(best, 100_000 / (performance.now() - t))
  }
  return Math.round(best)
}

/** Runs one writer to completion; `shared` lets in-process writers share the memory backend. */
export async function runWriter(
  cfg: WriterConfig,
  report: (p: WriterProgress) => void,
  shared?: { store: OptimisticStore; locks: Locks },
): Promise<WriterProgress> {
  const store = shared?.store ?? (cfg.servers ? new MemcachedHotObject(cfg.servers, cfg.objectName) : new MemoryHotObject())
  const locks = shared?.locks ?? (cfg.servers ? new Locks({ servers: cfg.servers, prefix: 'demo-lock:', onWarning: () => {} }) : new Locks({ store: new MemoryStore() }))
  const p: WriterProgress = { committed: 0, conflicts: 0, wastedMs: 0, lockWaits: 0, unlocked: 0 }
  const serializer: Serializer | null =
    cfg.mode === 'serialized' ? locks.serializer({ isConflict: (e) => e instanceof VersionConflictError, maxAttempts: 1000, ttlMs: 10_000, waitMs: 60_000 }) : null
  const once = async (): Promise<void> => {
    const { value, version } = await store.read()
    const t = performance.now()
    await doWork(cfg.work, cfg.workMs, cfg.iterationsPerMs)
    try {
      await store.write(value + 1, version)
    } catch (err) {
      if (err instanceof VersionConflictError) {
        p.conflicts++
        p.wastedMs += performance.now() - t
      }
      throw err
    }
  }
  try {
    for (let i = 0; i < cfg.updates; i++) {
      if (serializer) {
        await serializer.run(cfg.objectName, once)
      } else {
        for (;;) {
          try {
            await once()
            break
          } catch (err) {
            if (!(err instanceof VersionConflictError)) throw err
          }
        }
      }
      p.committed++
      if (serializer) {
        const s = serializer.stats()
        p.lockWaits = s.lockWaits
        p.unlocked = s.unlockedRuns
      }
      report({ ...p })
    }
  } finally {
    if (!shared) {
      await locks.close()
      await store.close()
    }
  }
  return p
}
