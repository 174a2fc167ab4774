// Small statistics and formatting helpers shared by the scenarios.

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
export const wallNow = () => performance.timeOrigin + performance.now()

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))

/**
 * CPU-bound work: a busy loop until this process has used `ms` milliseconds of CPU time (not
 * wall time), so that processes sharing a core really compete for it, as real computation does.
 */
export function spin(ms) {
  const start = process.cpuUsage()
  const budget = ms * 1000
  let x = 0
  for (;;) {
    for (let i = 0; i < 2000; i++) x = (x * 31 + i) | 0
    const used = process.cpuUsage(start)
    if (used.user + used.system >= budget) return x
  }
}

/** The p-th percentile (0..100) of `values`, nearest-rank on a sorted copy; NaN when empty. */
export function percentile(values, p) {
  if (values.length === 0) return NaN
  const s = Float64Array.from(values).sort()
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))
  return s[rank]
}

export const median = (values) => {
  if (values.length === 0) return NaN
  const s = Float64Array.from(values).sort()
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export const sum = (values) => values.reduce((a, b) => a + b, 0)

/** Rounds for JSON output: 3 significant decimals for small numbers, integers for large ones. */
export function round(x, digits = 3) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return x === undefined ? null : Number.isNaN(x) ? null : x
  if (Math.abs(x) >= 1000) return Math.round(x)
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** Human formatting: 12345 -> "12.3k", 0.01234 -> "0.0123". */
export function fmt(x, unit = '') {
  if (x === null || x === undefined || Number.isNaN(x)) return 'n/a'
  if (!Number.isFinite(x)) return String(x)
  const a = Math.abs(x)
  let s
  if (a >= 1e6) s = (x / 1e6).toFixed(2) + 'M'
  else if (a >= 1e4) s = (x / 1e3).toFixed(1) + 'k'
  else if (a >= 100) s = x.toFixed(0)
  else if (a >= 10) s = x.toFixed(1)
  else if (a >= 1) s = x.toFixed(2)
  else if (a === 0) s = '0'
  else s = x.toPrecision(2)
  return s + unit
}

export const fmtRatio = (x) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(2) + 'x')

/** A plain-text table with aligned columns (first column left-aligned, the rest right-aligned). */
export function table(header, rows) {
  const all = [header, ...rows].map((r) => r.map((c) => String(c)))
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  return [line(all[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n')
}

/** A Markdown table (for docs/PERFORMANCE.md). */
export function markdownTable(header, rows) {
  const esc = (c) => String(c).replace(/\|/g, '\\|')
  return [
    '| ' + header.map(esc).join(' | ') + ' |',
    '|' + header.map((_, i) => (i === 0 ? '---' : '---:')).join('|') + '|',
    ...rows.map((r) => '| ' + r.map(esc).join(' | ') + ' |'),
  ].join('\n')
}
