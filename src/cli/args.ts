/** A small, strict command-line parser: unknown flags and bad values are usage errors. */

export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export type FlagType = 'string' | 'boolean' | 'duration' | 'integer' | 'list'

export interface FlagSpec {
  readonly type: FlagType
  /** One-letter alias, without the dash. */
  readonly short?: string
}

export type FlagValues = Record<string, string | boolean | number | string[] | undefined>

export interface Parsed {
  readonly flags: FlagValues
  readonly positionals: string[]
  /** Everything after `--`, or null when there was no `--`. */
  readonly rest: string[] | null
}

/** Parses `argv` against `spec`. Booleans accept `--x`, `--no-x`; others `--x v` or `--x=v`. */
export function parseArgs(argv: readonly string[], spec: Readonly<Record<string, FlagSpec>>): Parsed {
  const flags: FlagValues = {}
  const positionals: string[] = []
  let rest: string[] | null = null
  const byShort = new Map(Object.entries(spec).flatMap(([name, s]) => (s.short ? [[s.short, name] as const] : [])))
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--') {
      rest = argv.slice(i + 1)
      break
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg)
      continue
    }
    let name: string
    let inline: string | undefined
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=')
      name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
      inline = eq === -1 ? undefined : arg.slice(eq + 1)
    } else {
      const long = byShort.get(arg.slice(1))
      if (!long) throw new UsageError(`unknown option ${arg}`)
      name = long
    }
    let s = spec[name]
    if (!s && name.startsWith('no-') && spec[name.slice(3)]?.type === 'boolean' && inline === undefined) {
      flags[name.slice(3)] = false
      continue
    }
    if (!s) throw new UsageError(`unknown option --${name}`)
    if (s.type === 'boolean') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') throw new UsageError(`--${name} takes no value`)
      flags[name] = inline !== 'false'
      continue
    }
    const value = inline ?? argv[++i]
    if (value === undefined || (inline === undefined && value.startsWith('--'))) throw new UsageError(`--${name} needs a value`)
    s = s as FlagSpec
    flags[name] = convert(name, s.type, value, flags[name])
  }
  return { flags, positionals, rest }
}

function convert(name: string, type: FlagType, value: string, previous: FlagValues[string]): FlagValues[string] {
  switch (type) {
    case 'duration':
      return parseDuration(value, `--${name}`)
    case 'integer': {
      if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(value)}`)
      return Number(value)
    }
    case 'list':
      return [...((previous as string[] | undefined) ?? []), ...value.split(',').filter(Boolean)]
    default:
      return value
  }
}

/** `500ms`, `30s`, `2m`, `1h`, or a bare number of milliseconds. */
export function parseDuration(value: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim())
  if (!m) throw new UsageError(`${what} must be a duration like 500ms, 30s, 2m or a number of ms, got ${JSON.stringify(value)}`)
  const n = Number(m[1])
  const unit = m[2] ?? 'ms'
  const ms = Math.round(n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000))
  if (!Number.isSafeInteger(ms)) throw new UsageError(`${what} is too large: ${JSON.stringify(value)}`)
  return ms
}
