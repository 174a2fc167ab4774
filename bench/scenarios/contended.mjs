// `contended`: N processes fight for one key, each holding it `holdMs` per acquisition, for a
// fixed duration; a second variant pauses 5 ms after each release, so that every process
// leaves the lock to the others for a while. Stamps from all processes are merged on one
// wall-clock timeline (performance.timeOrigin + performance.now()).
import { CONTENDERS } from '../lib/impls.mjs'
import { memcachedRequests, redisRequests } from '../lib/server-stats.mjs'
import { fmt, fmtRatio, median, percentile, round, sum, table, wallNow } from '../lib/stats.mjs'

export const IMPLS = Object.keys(CONTENDERS)
export const VARIANTS = [
  { name: 'hold 1 ms', holdMs: 1, pauseMs: 0 },
  { name: 'hold 1 ms, pause 5 ms', holdMs: 1, pauseMs: 5 },
]

const slug = (s) => s.replace(/[^a-z0-9]+/gi, '-')

/** Metrics of one run from every worker's stamps (`[acquire called, acquired, release called]` triples). */
export function analyze(results, durationMs) {
  const intervals = []
  results.forEach((r, w) => {
    for (let i = 0; i < r.stamps.length; i += 3) intervals.push({ w, req: r.stamps[i], acq: r.stamps[i + 1], rel: r.stamps[i + 2] })
  })
  intervals.sort((a, b) => a.acq - b.acq)
  const waits = intervals.map((x) => x.acq - x.req)
  const holds = intervals.map((x) => x.rel - x.acq)
  const otherGaps = []
  let selfHandoffs = 0
  let overlaps = 0
  let maxRel = -Infinity
  for (let i = 0; i < intervals.length; i++) {
    const cur = intervals[i]
    // the stamps lie inside the true holding periods, so any crossing is a real double grant
    if (cur.acq < maxRel) overlaps++
    maxRel = Math.max(maxRel, cur.rel)
    if (i === 0) continue
    const prev = intervals[i - 1]
    if (prev.w === cur.w) selfHandoffs++
    else otherGaps.push(cur.acq - prev.rel)
  }
  const perWorker = results.map((_, w) => intervals.filter((x) => x.w === w).length)
  const handoffs = Math.max(1, intervals.length - 1)
  return {
    acquisitions: intervals.length,
    perSecond: intervals.length / (durationMs / 1000),
    waitP50: percentile(waits, 50),
    waitP99: percentile(waits, 99),
    waitMax: waits.length ? Math.max(...waits) : NaN,
    holdP50: percentile(holds, 50),
    gapOtherP50: percentile(otherGaps, 50),
    gapOtherP99: percentile(otherGaps, 99),
    selfReacquire: selfHandoffs / handoffs,
    fairness: perWorker.length && Math.max(...perWorker) > 0 ? Math.min(...perWorker) / Math.max(...perWorker) : 0,
    perWorker,
    overlaps,
    errors: sum(results.map((r) => r.errors)),
    lastError: results.find((r) => r.lastError)?.lastError ?? null,
  }
}

const MEDIAN_KEYS = [
  'perSecond',
  'waitP50',
  'waitP99',
  'waitMax',
  'holdP50',
  'gapOtherP50',
  'gapOtherP99',
  'selfReacquire',
  'fairness',
  'requestsPerAcquisition',
]

export async function runContended(ctx, pool) {
  const durationMs = ctx.quick ? 800 : 3000
  const rounds = 3
  await pool.runAll(() => ({ type: 'warmup', impls: IMPLS }))
  const out = { workers: pool.size, durationMs, rounds, variants: {} }
  for (const v of VARIANTS) {
    const runs = Object.fromEntries(IMPLS.map((i) => [i, []]))
    for (let r = 0; r < rounds; r++) {
      for (const impl of IMPLS) {
        const key = `cont:${slug(impl)}:${v.pauseMs}:${r}:${Date.now()}`
        const requests = impl === 'memcached-lock' ? () => memcachedRequests(ctx.memcached) : () => redisRequests(ctx.redisPort)
        const before = await requests()
        const startAt = wallNow() + 200
        const results = await pool.runAll(() => ({ type: 'contended', impl, key, startAt, durationMs, holdMs: v.holdMs, pauseMs: v.pauseMs }))
        const m = analyze(results, durationMs)
        // every request the server answered during the run (polls, wake-up attempts, queue tickets...) per acquisition
        m.requestsPerAcquisition = ((await requests()) - before) / Math.max(1, m.acquisitions)
        runs[impl].push(m)
        ctx.log(
          `contended [${v.name}] round ${r + 1}/${rounds} ${impl}: ${m.acquisitions} acq, wait p50 ${fmt(m.waitP50)} p99 ${fmt(m.waitP99)} ms, ` +
            `gap→other p50 ${fmt(m.gapOtherP50)} ms, self ${(m.selfReacquire * 100).toFixed(0)}%, fairness ${m.fairness.toFixed(2)}, ` +
            `${fmt(m.requestsPerAcquisition)} server requests/acq, overlaps ${m.overlaps}` +
            (m.errors ? `, errors ${m.errors} (${m.lastError})` : ''),
        )
      }
    }
    const summary = {}
    for (const impl of IMPLS) {
      const s = {}
      for (const k of MEDIAN_KEYS) s[k] = round(median(runs[impl].map((m) => m[k])))
      s.acquisitions = runs[impl].map((m) => m.acquisitions)
      s.perWorker = runs[impl].map((m) => m.perWorker)
      s.overlaps = sum(runs[impl].map((m) => m.overlaps))
      s.errors = sum(runs[impl].map((m) => m.errors))
      summary[impl] = s
    }
    const ml = summary['memcached-lock']
    const ratios = {}
    for (const other of IMPLS.filter((i) => i !== 'memcached-lock')) {
      ratios[`wait p99: memcached-lock / ${other}`] = round(ml.waitP99 / summary[other].waitP99)
      ratios[`gap to other p50: memcached-lock / ${other}`] = round(ml.gapOtherP50 / summary[other].gapOtherP50)
    }
    out.variants[v.name] = { ...v, summary, ratios }
  }
  return out
}

export function renderContended(res) {
  const parts = []
  for (const [name, v] of Object.entries(res.variants)) {
    const ml = v.summary['memcached-lock']
    const rows = IMPLS.map((i) => {
      const s = v.summary[i]
      return [
        i,
        fmt(s.perSecond),
        fmt(s.waitP50),
        fmt(s.waitP99),
        fmt(s.waitMax),
        i === 'memcached-lock' ? '1.00x' : fmtRatio(ml.waitP99 / s.waitP99),
        fmt(s.gapOtherP50),
        i === 'memcached-lock' ? '1.00x' : fmtRatio(ml.gapOtherP50 / s.gapOtherP50),
        `${Math.round(s.selfReacquire * 100)}%`,
        s.fairness.toFixed(2),
        fmt(s.requestsPerAcquisition),
        String(s.overlaps),
        String(s.errors),
      ]
    })
    parts.push(
      `${name} (${res.workers} processes, ${res.durationMs} ms per run, medians of ${res.rounds} rounds)\n` +
        table(['implementation', 'acq/s', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'p99 ml÷this', 'gap→other p50 ms', 'gap ml÷this', 'self re-acq', 'fairness', 'req/acq', 'overlaps', 'errors'], rows),
    )
  }
  return parts.join('\n\n')
}
