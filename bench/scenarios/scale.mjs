// `scale`: 10k locks held with autoRenew in one process (a child started with --expose-gc):
// renewal traffic, CPU (process.cpuUsage over the window, % of one core) and heap per lock.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { track } from '../lib/servers.mjs'
import { fmt, round, table } from '../lib/stats.mjs'

const WORKER = fileURLToPath(new URL('../workers/scale-worker.mjs', import.meta.url))

export async function runScale(ctx) {
  const locks = 10_000
  const ttlMs = 6000
  // renewals come every ttlMs * renewAt (0.34) = 2.04 s: measure whole periods
  const windowMs = (ctx.quick ? 2 : 5) * ttlMs * 0.34
  const child = fork(WORKER, [ctx.memcached, String(locks), String(ttlMs), String(windowMs)], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  track(child, 'scale worker')
  const result = await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`scale worker exited with code ${code} before reporting`)))
  })
  await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)))
  const out = Object.fromEntries(Object.entries(result).map(([k, v]) => [k, typeof v === 'number' ? round(v) : v]))
  // what the default TTL (30 s) would cost: renewal work scales with the renewal rate
  out.cpuPercentAtDefaultTtl = round(result.cpuPercent * (ttlMs / 30_000))
  ctx.log(
    `scale: ${locks} locks, ${fmt(result.renewalsPerSecond)} renewals/s, CPU ${result.cpuPercent.toFixed(2)}% of a core, ` +
      `${fmt(result.heapBytesPerLock)} B heap/lock, lost ${result.lost}`,
  )
  return out
}

export function renderScale(r) {
  const rows = [
    ['locks held (autoRenew)', String(r.locks)],
    ['ttlMs (renewal every ttl × 0.34)', String(r.ttlMs)],
    ['measuring window', `${r.windowMs} ms`],
    ['renewals/s (server cas_hits)', `${fmt(r.renewalsPerSecond)} (expected ${fmt(r.expectedRenewalsPerSecond)})`],
    ['CPU, % of one core', `${r.cpuPercent.toFixed(2)}%  (user ${fmt(r.cpuUserMs)} ms, sys ${fmt(r.cpuSystemMs)} ms)`],
    ['CPU scaled to ttlMs 30000', `${r.cpuPercentAtDefaultTtl.toFixed(2)}% (extrapolated)`],
    ['heap per lock (after gc)', `${fmt(r.heapBytesPerLock)} B (after the window: ${fmt(r.heapBytesPerLockAfterWindow)} B)`],
    ['acquire 10k / release 10k', `${r.acquireMs} ms / ${r.releaseMs} ms`],
    ['still held at the end / lost / renewal errors', `${r.stillHeld} / ${r.lost} / ${r.renewalErrors} (sampled on server ${r.sampledOnServer})`],
  ]
  return table(['memcached-lock', 'value'], rows)
}
