/** Terminal output: colour only on a TTY without NO_COLOR (set and non-empty, per no-color.org); JSON for scripts. */
import type { Writable } from 'node:stream'

export interface Io {
  readonly stdout: Writable & { isTTY?: boolean }
  readonly stderr: Writable & { isTTY?: boolean }
  readonly env: NodeJS.ProcessEnv
}

export function useColour(io: Io, stream: 'stdout' | 'stderr' = 'stdout'): boolean {
  return Boolean(io[stream].isTTY) && !io.env.NO_COLOR && io.env.TERM !== 'dumb'
}

export function paint(io: Io, code: 'red' | 'green' | 'yellow' | 'bold' | 'dim', text: string, stream: 'stdout' | 'stderr' = 'stdout'): string {
  if (!useColour(io, stream)) return text
  const c = { red: 31, green: 32, yellow: 33, bold: 1, dim: 2 }[code]
  return `\x1b[${c}m${text}\x1b[0m`
}

export function println(io: Io, text = ''): void {
  io.stdout.write(text + '\n')
}

export function eprintln(io: Io, text = ''): void {
  io.stderr.write(text + '\n')
}

/** JSON with bigints as strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)
}

/** Left-aligned text table. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = []
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, visibleLength(c))))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat((widths[i] as number) - visibleLength(c)))).join('  ')).join('\n')
}

function visibleLength(s: string): number {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;]*m/g, '').length
}

export function formatMs(ms: number | null): string {
  if (ms === null) return 'never expires'
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 120_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`
  return `${Math.round(ms / 60_000)} min`
}
