import type { MemcachedClient } from '../client/client.js'
import type { ConnectionOptions } from '../client/connection.js'
import { parseServerList, type ServerAddress } from '../client/server-address.js'
import { InvalidArgumentError } from '../errors.js'
import { describe, validatePrefix } from '../protocol/keys.js'
import type { Clock } from './lock-store.js'
import { checkTtlMs } from './ttl.js'

/** Options of {@link MemcachedStore}. Times in milliseconds. */
export interface MemcachedStoreOptions extends ConnectionOptions {
  /**
   * Servers: `"host:port"`, a comma-separated list, or an array of strings / `{ host, port }`.
   * @default env `MEMCACHED_SERVERS`, then env `MEMCACHEDLOCK_SERVERS`, then `"127.0.0.1:11211"`
   */
  servers?: string | readonly (string | ServerAddress)[]
  /** Prepended to every lock key (a namespace). @default "lock:" */
  prefix?: string
  /** Use this client instead of creating one (it is not closed with the store). */
  client?: MemcachedClient
  /** Wake long waits (over 100 ms) when a lock is released, through a `watch mutations` connection per server. @default true */
  pushWakeups?: boolean
  /** Release with a compare-and-expire store (`ms T-1 C<cas>`), which `watch` reports, instead of `md C<cas>`. @default true */
  releaseAsStore?: boolean
  /** Refuse to grant locks on servers that could evict them (`UnsafeServerError`) instead of warning. @default false */
  refuseUnsafeServers?: boolean
  /** Longest lock TTL you use, for the eviction check at connect. @default 60000 */
  maxTtlMs?: number
  /** Receives warnings (eviction risk). @default process.emitWarning */
  onWarning?: (message: string, server: string) => void
  /** Monotonic clock for lease validity. @default performance.now */
  clock?: Clock
}

export interface ResolvedStoreOptions {
  readonly servers: readonly ServerAddress[]
  readonly prefix: string
  readonly pushWakeups: boolean
  readonly releaseAsStore: boolean
  readonly refuseUnsafeServers: boolean
  readonly maxTtlMs: number
  readonly onWarning: (message: string, server: string) => void
  readonly connection: ConnectionOptions
}

/** Where the server list comes from: the option, then `MEMCACHED_SERVERS`, then `MEMCACHEDLOCK_SERVERS`, then localhost. */
export function resolveServers(servers: MemcachedStoreOptions['servers'], env: NodeJS.ProcessEnv = process.env): ServerAddress[] {
  if (servers !== undefined) return parseServerList(servers)
  const fromEnv = env.MEMCACHED_SERVERS?.trim() || env.MEMCACHEDLOCK_SERVERS?.trim()
  return parseServerList(fromEnv || '127.0.0.1:11211')
}

export function resolveStoreOptions(o: MemcachedStoreOptions): ResolvedStoreOptions {
  if (typeof o !== 'object' || o === null) throw new InvalidArgumentError(`store options must be an object, got ${describe(o)}`)
  for (const name of ['connectTimeoutMs', 'requestTimeoutMs', 'reconnectMinDelayMs', 'reconnectMaxDelayMs'] as const) {
    const v = o[name]
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 600_000)) {
      throw new InvalidArgumentError(`${name} must be an integer number of milliseconds from 1 to 600000, got ${describe(v)}`)
    }
  }
  for (const name of ['pushWakeups', 'releaseAsStore', 'refuseUnsafeServers'] as const) {
    const v = o[name]
    if (v !== undefined && typeof v !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean, got ${describe(v)}`)
  }
  if (o.onWarning !== undefined && typeof o.onWarning !== 'function') {
    throw new InvalidArgumentError(`onWarning must be a function (message, server) => void, got ${describe(o.onWarning)}`)
  }
  if (o.clock !== undefined && typeof o.clock?.now !== 'function') {
    throw new InvalidArgumentError(`clock must be an object with a now() method, got ${describe(o.clock)}`)
  }
  if (o.tls !== undefined && typeof o.tls !== 'boolean' && (typeof o.tls !== 'object' || o.tls === null)) {
    throw new InvalidArgumentError(`tls must be true, false or node:tls connect options, got ${describe(o.tls)}`)
  }
  const poll = o.burstPollMicros
  if (poll !== undefined && (typeof poll !== 'number' || !Number.isInteger(poll) || poll < 0 || poll > 10_000)) {
    throw new InvalidArgumentError(`burstPollMicros must be an integer number of microseconds from 0 to 10000, got ${describe(poll)}`)
  }
  if (o.reconnectMinDelayMs !== undefined && o.reconnectMaxDelayMs !== undefined && o.reconnectMinDelayMs > o.reconnectMaxDelayMs) {
    throw new InvalidArgumentError(`reconnectMinDelayMs (${o.reconnectMinDelayMs}) must not be greater than reconnectMaxDelayMs (${o.reconnectMaxDelayMs})`)
  }
  if (o.auth !== undefined && (typeof o.auth?.username !== 'string' || typeof o.auth?.password !== 'string' || /[\s]/.test(o.auth.username))) {
    throw new InvalidArgumentError('auth must be { username, password } with a username without spaces')
  }
  const servers = o.client ? o.client.connections.map((c) => c.address) : resolveServers(o.servers)
  return {
    servers,
    prefix: validatePrefix(o.prefix ?? 'lock:'),
    pushWakeups: o.pushWakeups ?? true,
    releaseAsStore: o.releaseAsStore ?? true,
    refuseUnsafeServers: o.refuseUnsafeServers ?? false,
    maxTtlMs: o.maxTtlMs === undefined ? 60_000 : checkTtlMs(o.maxTtlMs, 'maxTtlMs'),
    onWarning: o.onWarning ?? ((message) => process.emitWarning(message, { code: 'MEMCACHED_LOCK_EVICTION' })),
    connection: {
      connectTimeoutMs: o.connectTimeoutMs,
      requestTimeoutMs: o.requestTimeoutMs,
      tls: o.tls,
      auth: o.auth,
      reconnectMinDelayMs: o.reconnectMinDelayMs,
      reconnectMaxDelayMs: o.reconnectMaxDelayMs,
      burstPollMicros: o.burstPollMicros,
    },
  }
}
