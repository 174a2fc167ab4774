// One of the N processes of the contended and serializer scenarios. It keeps its connections
// across rounds and takes tasks from the parent over IPC; all tasks of a run start at the same
// wall-clock instant. Usage: node lock-worker.mjs <memcached host:port> <redis port> <index>
import { CONTENDERS, newLocks } from '../lib/impls.mjs'
import { casOf, RawMeta } from '../lib/raw-meta.mjs'
import { sleep, spin, wallNow } from '../lib/stats.mjs'

const [memcached, redisPortArg, indexArg] = process.argv.slice(2)
const env = { memcached, redisPort: Number(redisPortArg) }
const index = Number(indexArg)

const contenders = new Map()
async function contender(name) {
  let c = contenders.get(name)
  if (!c) {
    const make = CONTENDERS[name]
    if (!make) throw new Error(`unknown implementation ${name}`)
    c = await make(env)
    contenders.set(name, c)
  }
  return c
}

let raw = null
let locks = null

async function warmup({ impls }) {
  // connect everything and run each code path once, off the measured keys
  for (const name of impls) {
    const c = await contender(name)
    const release = await c.acquire(`warm:${name}:${index}`)
    await release()
  }
  raw ??= await RawMeta.connect(memcached)
  locks ??= newLocks(memcached)
  const ser = locks.serializer({ isConflict: () => false })
  await ser.run(`warm:ser:${index}`, () => raw.request('mn\r\n'))
  return { ok: true }
}

/** Holds the lock `holdMs` per acquisition, pauses `pauseMs` after each release, until the end time. */
async function contended({ impl, key, startAt, durationMs, holdMs, pauseMs }) {
  const c = await contender(impl)
  const stamps = [] // triples: acquire called, acquired, release called (wall-clock ms)
  let errors = 0
  let lastError = null
  await sleep(startAt - wallNow())
  const end = startAt + durationMs
  while (wallNow() < end) {
    const tReq = wallNow()
    let release
    try {
      release = await c.acquire(key)
    } catch (err) {
      errors++
      lastError = String(err?.message ?? err)
      continue
    }
    const tAcq = wallNow()
    await sleep(holdMs)
    const tRel = wallNow()
    try {
      await release()
    } catch (err) {
      errors++
      lastError = String(err?.message ?? err)
    }
    stamps.push(tReq, tAcq, tRel)
    if (pauseMs > 0) await sleep(pauseMs)
  }
  return { stamps, errors, lastError }
}

class Conflict extends Error {
  constructor(workMs) {
    super('CAS conflict')
    this.workMs = workMs
  }
}

/**
 * `updates` read-modify-write increments of one memcached counter (`mg v c` -> work -> `ms C<cas>`),
 * optimistic only (retry at once on EX) or through `locks.serializer().run()`.
 */
async function serializer({ mode, work, key, updates, workMs, startAt }) {
  raw ??= await RawMeta.connect(memcached)
  locks ??= newLocks(memcached)
  let conflicts = 0
  let wastedMs = 0
  let usefulMs = 0
  const doWork = work === 'cpu' ? async () => spin(workMs) : () => sleep(workMs)
  const attempt = async () => {
    const g = await raw.request(`mg ${key} v c\r\n`)
    if (!g.line.startsWith('VA')) throw new Error(`mg ${key}: ${g.line}`)
    const cas = casOf(g.line)
    const value = String(Number(g.value) + 1)
    const t = performance.now()
    await doWork()
    const spent = performance.now() - t
    const s = await raw.request(`ms ${key} ${value.length} C${cas}\r\n${value}\r\n`)
    if (s.line.startsWith('HD')) {
      usefulMs += spent
      return
    }
    if (s.line.startsWith('EX') || s.line.startsWith('NF')) {
      conflicts++
      wastedMs += spent
      throw new Conflict(spent)
    }
    throw new Error(`ms ${key}: ${s.line}`)
  }
  const ser =
    mode === 'serializer' ? locks.serializer({ isConflict: (e) => e instanceof Conflict, maxAttempts: 1000, waitMs: 120_000, ttlMs: 10_000 }) : null
  await sleep(startAt - wallNow())
  for (let i = 0; i < updates; i++) {
    if (ser) {
      await ser.run(key, attempt)
    } else {
      for (;;) {
        try {
          await attempt()
          break
        } catch (err) {
          if (!(err instanceof Conflict)) throw err
        }
      }
    }
  }
  return { doneAt: wallNow(), conflicts, wastedMs, usefulMs, serializerStats: ser ? ser.stats() : null }
}

const TASKS = { warmup, contended, serializer }

process.on('message', async (msg) => {
  if (msg.type === 'exit') {
    await Promise.allSettled([...contenders.values()].map((c) => c.close()))
    await locks?.close()
    raw?.close()
    process.exit(0)
  }
  try {
    const result = await TASKS[msg.type](msg)
    process.send({ id: msg.id, result })
  } catch (err) {
    process.send({ id: msg.id, error: String(err?.stack ?? err) })
  }
})
// never outlive the parent
process.on('disconnect', () => process.exit(1))
process.send({ ready: true })
