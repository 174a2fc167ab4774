/**
 * `memcached-lock demo`: the project's main job. N writer processes update one hot object in an
 * optimistic-concurrency store, first optimistic only, then through the writer serializer, with
 * a live progress line, then a side-by-side table. Backend: `MEMCACHED_SERVERS` if set, else a
 * private memcached started from PATH, else the in-process memory store (writers as tasks).
 */
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Locks, MemoryStore } from '../../index.js'
import { parseArgs, UsageError } from '../args.js'
import { EXIT, describeError, isUnavailable } from '../common.js'
import { findMemcached, startLocalMemcached, type LocalMemcached } from '../local-memcached.js'
import { eprintln, paint, println, table, toJson, type Io } from '../output.js'
import { MemcachedHotObject, MemoryHotObject, type OptimisticStore } from './hot-object.js'
import { calibrate, runWriter, type WriterConfig, type WriterProgress } from './writer.js'

export const DEMO_HELP = `Usage: memcached-lock demo [options]

N writers update one hot object in an optimistic-concurrency store (memcached CAS), each doing
an expensive change between read and commit. First optimistic only (retry on conflict), then
through the writer serializer (a lock held from read to commit). Prints conflicts, work thrown
away, total time and throughput side by side, and checks the final value.

Options:
      --writers <n>         writer processes                          default 8
      --updates <n>         updates per writer                        default 25
      --work-ms <n>         work per update, in ms                    default 5
      --work <cpu|io>       CPU-bound (busy loop) or I/O-like (sleep) default cpu
      --quick               4 writers x 10 updates x 3 ms (about a second)
      --memory              use the in-process memory store (no memcached)
      --json                print the results as JSON
  -h, --help

Backend: MEMCACHED_SERVERS if set; otherwise a private memcached started from PATH (or
MEMCACHED_BIN) on a free port and stopped afterwards; otherwise the in-process memory store.

Exit codes: 0 both final values right; ${EXIT.UNAVAILABLE} MEMCACHED_SERVERS unreachable; ${EXIT.USAGE} bad usage;
${EXIT.SOFTWARE} a final value was wrong (a bug: please report).

Examples:
  npx memcached-lock demo
  npx memcached-lock demo --writers 16 --work io --work-ms 2`

interface PhaseResult {
  readonly mode: 'optimistic' | 'serialized'
  readonly totalMs: number
  readonly committed: number
  readonly conflicts: number
  readonly wastedMs: number
  readonly lockWaits: number
  readonly unlockedRuns: number
  readonly finalValue: number
  readonly expected: number
}

const SPEC = {
  writers: { type: 'integer' },
  updates: { type: 'integer' },
  'work-ms': { type: 'integer' },
  work: { type: 'string' },
  quick: { type: 'boolean' },
  memory: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

export async function demoCommand(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals, rest } = parseArgs(argv, SPEC)
  if (flags.help) {
    println(io, DEMO_HELP)
    return EXIT.OK
  }
  if (positionals.length > 0 || rest !== null) throw new UsageError(`demo takes no arguments, got ${[...positionals, ...(rest ?? [])].join(' ')}`)
  const quick = flags.quick === true
  const writers = (flags.writers as number | undefined) ?? (quick ? 4 : 8)
  const updates = (flags.updates as number | undefined) ?? (quick ? 10 : 25)
  const workMs = (flags['work-ms'] as number | undefined) ?? (quick ? 3 : 5)
  const work = (flags.work as string | undefined) ?? 'cpu'
  if (writers < 1 || writers > 64) throw new UsageError(`--writers must be from 1 to 64, got ${writers}`)
  if (updates < 1 || updates > 10_000) throw new UsageError(`--updates must be from 1 to 10000, got ${updates}`)
  if (workMs > 10_000) throw new UsageError(`--work-ms must be at most 10000, got ${workMs}`)
  if (work !== 'cpu' && work !== 'io') throw new UsageError(`--work must be cpu or io, got ${JSON.stringify(work)}`)
  const json = flags.json === true
  const say = (line: string): void => {
    if (!json) println(io, line)
  }

  let servers: string | null = null
  let local: LocalMemcached | null = null
  let backend: string
  if (flags.memory) {
    backend = 'in-process memory store (--memory): writers run as concurrent tasks in this process'
  } else if (io.env.MEMCACHED_SERVERS?.trim()) {
    servers = io.env.MEMCACHED_SERVERS.trim()
    backend = `memcached at ${servers} (MEMCACHED_SERVERS)`
  } else {
    const bin = findMemcached(io.env)
    if (bin) {
      local = await startLocalMemcached(bin)
      servers = local.address
      backend = `a private memcached (${bin}, pid ${local.pid}) on ${local.address}`
    } else {
      backend = 'in-process memory store: no memcached found on PATH (install it, or set MEMCACHED_SERVERS, for the multi-process demo)'
    }
  }
  say(paint(io, 'bold', 'memcached-lock demo: the writer serializer in front of an optimistic-concurrency store'))
  say(`backend: ${backend}`)
  say(`${writers} writers x ${updates} updates of one hot object, ${workMs} ms of ${work === 'cpu' ? 'CPU-bound' : 'I/O-like'} work between read and commit\n`)

  const cfgBase = { updates, workMs, work: work as 'cpu' | 'io', servers, objectName: `hot-${process.pid}-${Date.now()}`, iterationsPerMs: calibrate() }
  const results: PhaseResult[] = []
  try {
    for (const mode of ['optimistic', 'serialized'] as const) {
      results.push(await runPhase(io, json, { ...cfgBase, mode }, writers))
    }
  } catch (err) {
    // an unreachable MEMCACHED_SERVERS is the user's setup, not a bug (exit 70)
    if (!isUnavailable(err)) throw err
    eprintln(io, `memcached-lock demo: ${describeError(err)}`)
    return EXIT.UNAVAILABLE
  } finally {
    await local?.stop()
  }

  if (json) {
    println(io, toJson({ backend, writers, updates, workMs, work, results }))
    return results.every((r) => r.finalValue === r.expected) ? EXIT.OK : EXIT.SOFTWARE
  }
  const [a, b] = results as [PhaseResult, PhaseResult]
  const rows = [
    ['', 'optimistic only', 'with serializer'],
    ['conflicts (retries)', String(a.conflicts), String(b.conflicts)],
    ['work thrown away', `${Math.round(a.wastedMs)} ms`, `${Math.round(b.wastedMs)} ms`],
    ['total time', `${(a.totalMs / 1000).toFixed(2)} s`, `${(b.totalMs / 1000).toFixed(2)} s`],
    ['throughput', `${rate(a)} updates/s`, `${rate(b)} updates/s`],
    ['lock waits / unlocked runs', '-', `${b.lockWaits} / ${b.unlockedRuns}`],
    ['final value', check(io, a), check(io, b)],
  ]
  println(io, '\n' + table(rows))
  const speed = a.totalMs / b.totalMs
  println(
    io,
    `\nThe serializer turned ${a.conflicts} conflicts into ${b.conflicts} and ${Math.round(a.wastedMs)} ms of wasted work into ${Math.round(b.wastedMs)} ms; ` +
      `it ran ${speed >= 1 ? `${speed.toFixed(2)}x faster` : `${(1 / speed).toFixed(2)}x slower`}. ` +
      'The store\'s own version check stayed on throughout, so no update was lost either way.',
  )
  return results.every((r) => r.finalValue === r.expected) ? EXIT.OK : EXIT.SOFTWARE
}

function rate(r: PhaseResult): string {
  return (r.committed / (r.totalMs / 1000)).toFixed(0)
}

function check(io: Io, r: PhaseResult): string {
  return r.finalValue === r.expected ? paint(io, 'green', `${r.finalValue} (correct)`) : paint(io, 'red', `${r.finalValue} (expected ${r.expected})`)
}

async function runPhase(io: Io, json: boolean, cfg: WriterConfig, writers: number): Promise<PhaseResult> {
  const store: OptimisticStore = cfg.servers ? new MemcachedHotObject(cfg.servers, cfg.objectName) : new MemoryHotObject()
  await store.reset()
  const progress: WriterProgress[] = Array.from({ length: writers }, () => ({ committed: 0, conflicts: 0, wastedMs: 0, lockWaits: 0, unlocked: 0 }))
  const total = writers * cfg.updates
  const label = cfg.mode === 'optimistic' ? 'optimistic only ' : 'with serializer '
  const live = Boolean(io.stdout.isTTY) && !json
  let lastPrinted = -1
  const draw = (final = false): void => {
    if (json) return
    const committed = progress.reduce((s, p) => s + p.committed, 0)
    const conflicts = progress.reduce((s, p) => s + p.conflicts, 0)
    const width = 30
    const filled = Math.round((committed / total) * width)
    const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${committed}/${total} updates, ${conflicts} conflicts`
    if (live) io.stdout.write(`\r${line}${final ? '\n' : ''}`)
    else {
      const quarter = Math.floor((committed / total) * 4)
      if (quarter > lastPrinted) {
        lastPrinted = quarter
        println(io, line)
      }
    }
  }
  const started = performance.now()
  if (cfg.servers) {
    await Promise.all(progress.map((_, i) => runChild(cfg, (p) => {
      progress[i] = p
      draw()
    })))
  } else {
    const locks = new Locks({ store: new MemoryStore() })
    await Promise.all(progress.map((_, i) => runWriter(cfg, (p) => {
      progress[i] = p
      draw()
    }, { store, locks })))
    await locks.close()
  }
  const totalMs = performance.now() - started
  draw(true)
  const finalValue = (await store.read()).value
  await store.close()
  return {
    mode: cfg.mode,
    totalMs,
    committed: progress.reduce((s, p) => s + p.committed, 0),
    conflicts: progress.reduce((s, p) => s + p.conflicts, 0),
    wastedMs: progress.reduce((s, p) => s + p.wastedMs, 0),
    lockWaits: progress.reduce((s, p) => s + p.lockWaits, 0),
    unlockedRuns: progress.reduce((s, p) => s + p.unlocked, 0),
    finalValue,
    expected: total,
  }
}

function runChild(cfg: WriterConfig, onProgress: (p: WriterProgress) => void): Promise<void> {
  const entry = fileURLToPath(new URL('./writer-process.js', import.meta.url))
  return new Promise((resolve, reject) => {
    const child = fork(entry, [JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] })
    let failed: string | null = null
    child.on('message', (m: { type: string; progress?: WriterProgress; message?: string }) => {
      if (m.progress) onProgress(m.progress)
      if (m.type === 'error') failed = m.message ?? 'writer failed'
    })
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 && !failed ? resolve() : reject(new Error(failed ?? `writer exited with code ${code}`))))
  })
}

export function reportDemoError(io: Io, err: unknown): void {
  eprintln(io, `memcached-lock demo: ${(err as Error)?.message ?? err}`)
}
