// `sequential` and `concurrent64`: uncontended acquire+release cycles per second, each
// implementation in turn (A B C D A B C D ...), one sample of `sampleMs` per turn.
import { CYCLERS } from '../lib/impls.mjs'
import { fmt, fmtRatio, median, round, table } from '../lib/stats.mjs'

export const IMPLS = ['raw floor', 'memcached-lock', 'redlock', 'redis-semaphore']

const slug = (s) => s.replace(/[^a-z0-9]+/gi, '-')

async function measure(fns, ms) {
  let n = 0
  const t0 = performance.now()
  const end = t0 + ms
  await Promise.all(
    fns.map(async (cycle) => {
      while (performance.now() < end) {
        await cycle()
        n++
      }
    }),
  )
  return n / ((performance.now() - t0) / 1000)
}

/** Runs one throughput scenario with `loops` concurrent loops (distinct keys) per implementation. */
export async function runThroughput(ctx, { name, loops }) {
  // short samples, many rounds: each round's samples sit next to each other in time, so a
  // per-round ratio cancels most of the drift of a shared machine
  const sampleMs = ctx.quick ? 250 : 500
  const rounds = ctx.quick ? 3 : 9
  const impls = {}
  const cycles = {}
  try {
    for (const impl of IMPLS) {
      impls[impl] = await CYCLERS[impl](ctx)
      const keys = Array.from({ length: loops }, (_, i) => `${name}:${slug(impl)}:${i}`)
      cycles[impl] = impls[impl].prepare(keys)
    }
    for (const impl of IMPLS) await measure(cycles[impl], ctx.quick ? 150 : 400) // warm-up
    const samples = Object.fromEntries(IMPLS.map((i) => [i, []]))
    for (let r = 0; r < rounds; r++) {
      for (const impl of IMPLS) {
        globalThis.gc?.()
        samples[impl].push(await measure(cycles[impl], sampleMs))
      }
      ctx.log(`${name} round ${r + 1}/${rounds}: ` + IMPLS.map((i) => `${i} ${fmt(samples[i][r])}/s`).join(', '))
    }
    const med = Object.fromEntries(IMPLS.map((i) => [i, median(samples[i])]))
    const ratio = (other) => median(samples['memcached-lock'].map((x, r) => x / samples[other][r]))
    return {
      name,
      unit: 'cycles/s',
      loops,
      rounds,
      sampleMs,
      samples: Object.fromEntries(IMPLS.map((i) => [i, samples[i].map((x) => round(x))])),
      median: Object.fromEntries(IMPLS.map((i) => [i, round(med[i])])),
      // medians of the per-round ratios
      ratios: {
        'memcached-lock / raw floor': round(ratio('raw floor')),
        'memcached-lock / redlock': round(ratio('redlock')),
        'memcached-lock / redis-semaphore': round(ratio('redis-semaphore')),
      },
    }
  } finally {
    await Promise.allSettled(Object.values(impls).map((i) => i.close()))
  }
}

export function renderThroughput(res) {
  const rows = IMPLS.map((i) => [
    i,
    fmt(res.median[i]),
    `${fmt(Math.min(...res.samples[i]))} .. ${fmt(Math.max(...res.samples[i]))}`,
    i === 'memcached-lock' ? '1.00x' : fmtRatio(res.ratios[`memcached-lock / ${i}`]),
  ])
  return (
    table(['implementation', `median ${res.unit}`, `range (${res.rounds} rounds)`, 'memcached-lock ÷ this*'], rows) +
    `\n* median of the ${res.rounds} per-round ratios (samples of one round run back to back)`
  )
}
