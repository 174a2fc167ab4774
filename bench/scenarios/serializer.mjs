// `serializer`: N writer processes increment one memcached counter with a CAS-checked
// read-modify-write (`mg v c` -> work -> `ms C<cas>`), `workMs` of work per attempt, either
// optimistic only (retry at once on EX) or inside `locks.serializer().run()`. Work is either
// sleep-like (a 2 ms timer: I/O) or CPU-bound (a 2 ms busy loop).
import { RawMeta } from '../lib/raw-meta.mjs'
import { fmt, fmtRatio, median, round, sum, table, wallNow } from '../lib/stats.mjs'

export const MODES = ['optimistic', 'serializer']
export const WORKS = ['sleep', 'cpu']

export async function runSerializer(ctx, pool) {
  const perWriter = ctx.quick ? 25 : 200
  const workMs = 2
  const rounds = 3
  const writers = pool.size
  const updates = perWriter * writers
  const raw = await RawMeta.connect(ctx.memcached)
  const out = { writers, updates, perWriter, workMs, rounds, works: {} }
  try {
    await pool.runAll(() => ({ type: 'warmup', impls: [] }))
    for (const work of WORKS) {
      const runs = Object.fromEntries(MODES.map((m) => [m, []]))
      for (let r = 0; r < rounds; r++) {
        for (const mode of MODES) {
          const key = `bench:obj:${work}:${mode}:${r}:${Date.now()}`
          const init = await raw.request(`ms ${key} 1 T0\r\n0\r\n`)
          if (init.line !== 'HD') throw new Error(`init ${key}: ${init.line}`)
          const startAt = wallNow() + 200
          const results = await pool.runAll(() => ({ type: 'serializer', mode, work, key, updates: perWriter, workMs, startAt }))
          const totalMs = Math.max(...results.map((x) => x.doneAt)) - startAt
          const final = await raw.request(`mg ${key} v\r\n`)
          const finalValue = Number(final.value)
          const stats = results.map((x) => x.serializerStats).filter(Boolean)
          const m = {
            totalMs,
            conflicts: sum(results.map((x) => x.conflicts)),
            wastedMs: sum(results.map((x) => x.wastedMs)),
            usefulMs: sum(results.map((x) => x.usefulMs)),
            finalValue,
            correct: finalValue === updates,
            unlockedRuns: stats.length ? sum(stats.map((s) => s.unlockedRuns)) : null,
            lockWaits: stats.length ? sum(stats.map((s) => s.lockWaits)) : null,
            lockWaitMs: stats.length ? sum(stats.map((s) => s.waitMs)) : null,
          }
          runs[mode].push(m)
          ctx.log(
            `serializer [${work}] round ${r + 1}/${rounds} ${mode}: total ${fmt(totalMs)} ms, conflicts ${m.conflicts}, ` +
              `thrown away ${fmt(m.wastedMs)} ms, final ${finalValue}/${updates}` +
              (m.unlockedRuns !== null ? `, unlocked runs ${m.unlockedRuns}` : ''),
          )
        }
      }
      const summary = {}
      for (const mode of MODES) {
        const rs = runs[mode]
        summary[mode] = {
          totalMs: round(median(rs.map((x) => x.totalMs))),
          conflicts: round(median(rs.map((x) => x.conflicts))),
          conflictsPerUpdate: round(median(rs.map((x) => x.conflicts)) / updates),
          wastedMs: round(median(rs.map((x) => x.wastedMs))),
          updatesPerSecond: round(updates / (median(rs.map((x) => x.totalMs)) / 1000)),
          allCorrect: rs.every((x) => x.correct),
          finalValues: rs.map((x) => x.finalValue),
          unlockedRuns: rs[0].unlockedRuns === null ? null : sum(rs.map((x) => x.unlockedRuns)),
          totalsMs: rs.map((x) => round(x.totalMs)),
        }
      }
      const o = summary.optimistic
      const s = summary.serializer
      out.works[work] = {
        summary,
        ratios: {
          'total time: serializer / optimistic': round(s.totalMs / o.totalMs),
          'conflicts: serializer / optimistic': round(o.conflicts > 0 ? s.conflicts / o.conflicts : s.conflicts === 0 ? 0 : Infinity),
        },
      }
    }
  } finally {
    raw.close()
  }
  return out
}

export function renderSerializer(res) {
  const rows = []
  for (const work of WORKS) {
    const w = res.works[work]
    for (const mode of MODES) {
      const s = w.summary[mode]
      rows.push([
        `${work === 'cpu' ? 'CPU-bound' : 'sleep-like'} · ${mode}`,
        fmt(s.totalMs),
        mode === 'serializer' ? fmtRatio(w.ratios['total time: serializer / optimistic']) : '',
        String(s.conflicts),
        s.conflictsPerUpdate.toFixed(2),
        fmt(s.wastedMs),
        fmt(s.updatesPerSecond),
        s.allCorrect ? `ok (${s.finalValues[0]})` : `WRONG ${s.finalValues.join('/')}`,
        s.unlockedRuns === null ? '' : String(s.unlockedRuns),
      ])
    }
  }
  return (
    `${res.writers} writer processes, ${res.updates} updates (${res.perWriter} each), ${res.workMs} ms of work per attempt, medians of ${res.rounds} rounds\n` +
    table(['work · mode', 'total ms', 'ser÷opt', 'conflicts', 'per update', 'thrown away ms', 'updates/s', 'final counter', 'unlocked runs'], rows)
  )
}
