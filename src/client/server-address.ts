import { InvalidArgumentError } from '../errors.js'
import { describe } from '../protocol/keys.js'

/** One memcached server. */
export interface ServerAddress {
  readonly host: string
  readonly port: number
}

/** `host:port` as written in configuration and errors (IPv6 hosts in brackets). */
export function formatAddress(a: ServerAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

/**
 * Parses `host`, `host:port`, `[v6]:port` (port defaults to 11211), or an object
 * `{ host, port }`. Throws {@link InvalidArgumentError} with what was expected.
 */
export function parseAddress(input: unknown): ServerAddress {
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const { host, port } = input as { host?: unknown; port?: unknown }
    if (typeof host !== 'string' || host.length === 0) {
      throw new InvalidArgumentError(`server host must be a non-empty string, got ${describe(host)}`)
    }
    return { host, port: checkPort(port ?? 11211, formatAddress({ host, port: 0 })) }
  }
  if (typeof input !== 'string' || input.trim().length === 0) {
    throw new InvalidArgumentError(`server must be "host:port" or { host, port }, got ${describe(input)}`)
  }
  const s = input.trim()
  let host: string
  let portText: string | undefined
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s)
  if (v6) {
    host = v6[1] as string
    portText = v6[2]
  } else {
    const parts = s.split(':')
    if (parts.length > 2) throw new InvalidArgumentError(`server must be "host:port" (IPv6 in brackets), got ${JSON.stringify(s)}`)
    host = parts[0] as string
    portText = parts[1]
  }
  // brackets belong only around an IPv6 address; "[]" or "ca[che]" would fail late, as a DNS error
  if (!host || /[\s[\]]/.test(host)) throw new InvalidArgumentError(`server host must be a non-empty name or address, got ${JSON.stringify(s)}`)
  if (portText !== undefined && !/^\d+$/.test(portText)) {
    throw new InvalidArgumentError(`server port must be an integer from 1 to 65535, got ${JSON.stringify(s)}`)
  }
  return { host, port: checkPort(portText === undefined ? 11211 : Number(portText), s) }
}

/** Parses a comma- or whitespace-separated list, as in `MEMCACHED_SERVERS=a:11211,b:11211`. */
export function parseServerList(input: unknown): ServerAddress[] {
  const items = typeof input === 'string' ? input.split(/[\s,]+/).filter(Boolean) : input
  if (!Array.isArray(items) || items.length === 0) {
    throw new InvalidArgumentError(`servers must be a non-empty list of "host:port", got ${describe(input)}`)
  }
  const out = items.map(parseAddress)
  const seen = new Set<string>()
  for (const a of out) {
    const k = formatAddress(a)
    if (seen.has(k)) throw new InvalidArgumentError(`servers lists ${k} twice`)
    seen.add(k)
  }
  return out
}

function checkPort(port: unknown, context: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`server port must be an integer from 1 to 65535, got ${describe(port)} in ${context}`)
  }
  return port
}
