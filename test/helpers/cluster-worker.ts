/**
 * A child process for the cluster safety test:
 * `node --import tsx test/helpers/cluster-worker.ts` with `CW_SERVERS` (comma list), `CW_QUORUM`
 * (1 for quorum mode), `CW_KEYS` (comma list), `CW_DURATION_MS`, `CW_TTL_MS`, `CW_MAX_TTL_MS`.
 * Acquires random keys until the deadline, holding each 0-5 ms, and prints one JSON line:
 * `{ holds: [{ key, start, end, fence, ended }], errors: { code: count } }` where `end` is the
 * earliest of release start, loss signal and the lease's own validity (monotonic ms from
 * `process.hrtime`, comparable across processes on one machine) and `ended` is `released`, `lost` or `release-failed`.
 */
import { Locks, type LockHandle } from '../../src/index.js'

const servers = (process.env.CW_SERVERS ?? '').split(',')
const keys = (process.env.CW_KEYS ?? 'k').split(',')
const durationMs = Number(process.env.CW_DURATION_MS ?? 5000)
const ttlMs = Number(process.env.CW_TTL_MS ?? 2000)
/** CLOCK_MONOTONIC in ms: one clock for every process on the machine (timeOrigin differs per process by up to ms). */
const now = (): number => Number(process.hrtime.bigint()) / 1e6

interface Hold {
  key: string
  start: number
  end: number
  fence: string
  ended: 'released' | 'lost' | 'release-failed'
  signalled: boolean
}

const locks = new Locks({
  servers,
  quorum: process.env.CW_QUORUM === '1',
  maxTtlMs: Number(process.env.CW_MAX_TTL_MS ?? 2000),
  connectTimeoutMs: 300,
  requestTimeoutMs: 300,
  prefix: process.env.CW_PREFIX ?? 'cw:',
  onWarning: () => {},
})
locks.on('renewal-error', () => {})
const holds: Hold[] = []
const errors: Record<string, number> = {}
const deadline = performance.now() + durationMs

while (performance.now() < deadline) {
  const key = keys[Math.floor(Math.random() * keys.length)] as string
  let h: LockHandle
  try {
    h = await locks.mutex(key, { ttlMs }).acquire({ waitMs: 500 })
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'unknown'
    errors[code] = (errors[code] ?? 0) + 1
    await new Promise((r) => setTimeout(r, 20))
    continue
  }
  const start = now()
  const validUntil = start + h.remainingMs
  let lostAt = Infinity
  h.onLost(() => (lostAt = now()))
  await new Promise((r) => setTimeout(r, Math.random() * 5))
  const releaseAt = now()
  let ended: Hold['ended'] = 'released'
  let releaseThrew = false
  try {
    if (!(await h.release())) ended = 'lost'
  } catch {
    // the caller hears of it: release rejected (the lease then ends by its TTL)
    ended = 'release-failed'
    releaseThrew = true
  }
  const signalled = lostAt !== Infinity || h.lostError !== null || releaseThrew
  if (lostAt !== Infinity && ended === 'released') ended = 'lost'
  holds.push({ key, start, end: Math.min(releaseAt, lostAt, validUntil), fence: h.fencingToken.toString(), ended, signalled })
}
await locks.close()
process.stdout.write(JSON.stringify({ holds, errors }) + '\n')
