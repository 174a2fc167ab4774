/**
 * The memcached store: every verb is one atomic, owner-checked meta command.
 *
 * | verb | command | answers |
 * |---|---|---|
 * | create | `ms <k> <len> T<s> ME c` + token | `HD c<cas>` acquired, `NS` held |
 * | extend | `ms <k> <len> T<s> C<cas> c` + token | `HD c<new cas>` extended, `EX`/`NF` lost |
 * | delete | `ms <k> <len> T-1 C<cas>` (or `md <k> C<cas>`) | `HD` released, `EX`/`NF` not ours |
 * | inspect | `mg <k> v c t` | `VA` holder, `EN` free |
 *
 * The CAS counter restarts at 1 when memcached restarts, so a bare CAS from before a reconnect
 * could match someone else's lock: after any reconnect, extend and delete first read the item
 * (`mg v c`) and act only if it still carries our token.
 */
import { MemcachedClient, type ServerHealth } from '../client/client.js'
import type { Connection, ServerIdentity } from '../client/connection.js'
import { ReleaseWatcher } from '../client/release-watcher.js'
import { InvalidArgumentError, ProtocolError, ServerError, UnsafeServerError } from '../errors.js'
import { sleep } from '../internal/sleep.js'
import type { MetaReply } from '../protocol/decoder.js'
import { describe, encodeCompanionKey, encodeKey, type WireKey } from '../protocol/keys.js'
import {
  monotonicClock,
  type Clock,
  type CreateOptions,
  type CreateResult,
  type Lease,
  type LockInfo,
  type LockStore,
  type OwnerInfo,
  type StoreLossReason,
} from './lock-store.js'
import { newToken } from './owner.js'
import { resolveStoreOptions, type MemcachedStoreOptions, type ResolvedStoreOptions } from './store-options.js'
import { checkTtlMs, driftMs, serverTtlSeconds } from './ttl.js'

/** TTL of the waiting-line counters: they vanish when a key stops being contended. */
const LINE_TTL_S = 60

interface LeaseState {
  readonly wire: WireKey
  readonly conn: Connection
  readonly value: string
  readonly cas: string
  readonly generation: number
}

class MemcachedLease implements Lease {
  #fence: bigint | null
  readonly #bootEpoch: number

  constructor(
    readonly key: string,
    readonly token: string,
    /** The fence, or null to build it from `bootEpoch` and the acquire CAS when first read. */
    fence: bigint | null,
    readonly validUntil: number,
    readonly server: string,
    /** @internal */ readonly state: LeaseState,
    bootEpoch = 0,
  ) {
    this.#fence = fence
    this.#bootEpoch = bootEpoch
  }

  /** Built on first use: most leases are released without anyone reading it. */
  get fence(): bigint {
    return (this.#fence ??= makeFence(this.#bootEpoch, BigInt(this.state.cas)))
  }
}

interface Watch {
  readonly lease: MemcachedLease
  readonly onLost: (reason: StoreLossReason, cause?: Error) => void
}

/** Builds a fencing token from the server's boot epoch and the acquire CAS: compares across restarts. */
export function makeFence(bootEpoch: number, cas: bigint): bigint {
  return (BigInt(bootEpoch) << 64n) | cas
}

/**
 * Events: `warning` (message: string, server: string) when a server could evict lock keys;
 * plus the client's `state`, `ready`, `down`, `restart` (forwarded, with the connection first).
 */
export class MemcachedStore implements LockStore {
  readonly clock: Clock
  readonly client: MemcachedClient
  readonly options: ResolvedStoreOptions
  readonly #ownsClient: boolean
  readonly #watches = new Map<Connection, Set<Watch>>()
  readonly #warned = new Set<string>()
  readonly #watchers = new Map<Connection, ReleaseWatcher>()
  #closed = false

  constructor(options: MemcachedStoreOptions = {}) {
    this.options = resolveStoreOptions(options)
    this.clock = options.clock ?? monotonicClock
    this.#ownsClient = !options.client
    this.client = options.client ?? new MemcachedClient({ ...this.options.connection, servers: this.options.servers })
    this.client.on('down', (conn: Connection, err: Error) => this.#lose(conn, 'disconnected', err))
    this.client.on('restart', (conn: Connection) => this.#lose(conn, 'server-restarted'))
    this.client.on('ready', (conn: Connection, id: ServerIdentity) => this.#checkEviction(conn, id))
  }

  /** Connects to every server now (otherwise the first request connects). */
  connect(): Promise<void> {
    return this.client.connect()
  }

  async create(key: string, ttlMs: number, owner: OwnerInfo, options?: CreateOptions): Promise<CreateResult> {
    checkTtlMs(ttlMs)
    const wire = encodeKey(this.options.prefix, key)
    const conn = this.client.connectionFor(wire)
    const token = options?.token ?? newToken()
    const value = token + ' ' + ownerJson(owner)
    const start = this.clock.now()
    const set = conn.metaSet(wire, value, ['T' + serverTtlSeconds(ttlMs), 'ME', 'c'])
    // pipelined in the same write: no extra round trip, and it tells a waiter how long to sleep
    const get = options?.wantRemaining ? conn.metaGet(wire, ['t']) : null
    get?.catch(() => {})
    const serving = options?.wantServing ? this.#lineKey(key, 's') : null
    const getServing = serving ? conn.metaGet(serving, ['v']) : null
    getServing?.catch(() => {})
    let reply: MetaReply
    try {
      reply = await set
    } catch (err) {
      // the add may have landed before the failure: make sure it does not linger
      this.#cleanupAmbiguous(conn, wire, token, ttlMs)
      throw err
    }
    if (reply.status === 'HD') {
      const id = conn.identity as ServerIdentity
      const cas = casOf(conn, reply, 'ms ME')
      const refusal = this.#refusal(conn, id, ttlMs)
      if (refusal) {
        // the item is ours (its CAS): take it back before refusing, so nothing stays locked
        await conn.metaDelete(wire, ['C' + cas]).catch(() => this.#cleanupAmbiguous(conn, wire, token, ttlMs))
        throw refusal
      }
      const lease = new MemcachedLease(
        key,
        token,
        null,
        start + ttlMs - driftMs(ttlMs),
        conn.name,
        { wire, conn, value, cas, generation: conn.generation },
        id.bootEpoch,
      )
      return { acquired: true, lease }
    }
    if (reply.status !== 'NS') throw unexpected(conn, 'ms ME', reply)
    if (!get && !getServing) return { acquired: false }
    const r = get ? await get.catch(() => null) : null
    const t = r && (r.status === 'HD' || r.status === 'VA') ? Number(r.flags.t) : NaN
    const sv = getServing ? await getServing.catch(() => null) : null
    const servingNo = sv?.status === 'VA' ? Number((sv.value as Buffer).toString('latin1')) : 0
    return {
      acquired: false,
      ...(Number.isInteger(t) && t >= 0 ? { remainingMs: t * 1000 } : {}),
      ...(getServing ? { serving: Number.isSafeInteger(servingNo) ? servingNo : 0 } : {}),
    }
  }

  async enterQueue(key: string): Promise<number> {
    const wire = this.#lineKey(key, 'q')
    const r = await this.#lineConn(key).metaArithmetic(wire, ['N' + LINE_TTL_S, 'J1', 'T' + LINE_TTL_S, 'v'])
    const n = r.status === 'VA' ? Number((r.value as Buffer).toString('latin1')) : NaN
    return Number.isSafeInteger(n) ? n : NaN
  }

  markServed(key: string, ticket: number): void {
    const wire = this.#lineKey(key, 's')
    this.#lineConn(key)
      .metaSet(wire, String(ticket), ['T' + LINE_TTL_S])
      .catch(() => {})
  }

  async hasWaiters(key: string): Promise<boolean> {
    const q = this.#lineKey(key, 'q')
    const sv = this.#lineKey(key, 's')
    const conn = this.#lineConn(key)
    const [a, b] = await Promise.all([conn.metaGet(q, ['v']), conn.metaGet(sv, ['v'])])
    const issued = a.status === 'VA' ? Number((a.value as Buffer).toString('latin1')) : 0
    const served = b.status === 'VA' ? Number((b.value as Buffer).toString('latin1')) : 0
    return issued > served
  }

  /** Reads the key's fence counter (a quorum store keeps fencing tokens monotonic with it); 0n when absent. */
  async readFenceCounter(key: string): Promise<bigint> {
    const wire = this.#lineKey(key, 'f')
    const r = await this.#lineConn(key).metaGet(wire, ['v'])
    const text = r.status === 'VA' ? (r.value as Buffer).toString('latin1') : '0'
    return /^\d{1,40}$/.test(text) ? BigInt(text) : 0n
  }

  /** Writes the key's fence counter; it lives 30 days (the longest TTL memcached reads as relative). */
  async writeFenceCounter(key: string, value: bigint): Promise<void> {
    const wire = this.#lineKey(key, 'f')
    await this.#lineConn(key).metaSet(wire, value.toString(), ['T2592000'])
  }

  /** Per-server state, for health checks. */
  health(): ServerHealth[] {
    return this.client.health()
  }

  /** The waiting line's counters and the fence counter live beside the lock, under keys no lock name can produce. */
  #lineKey(key: string, which: 'q' | 's' | 'f'): WireKey {
    return encodeCompanionKey(this.options.prefix, key, which)
  }

  /**
   * The server of the lock itself: companion keys are placed by the lock's key, not their own,
   * so a lock depends on one server only (a dead server must not slow the locks of another).
   */
  #lineConn(key: string): Connection {
    return this.client.connectionFor(encodeKey(this.options.prefix, key))
  }

  async extend(lease: Lease, ttlMs: number): Promise<Lease | null> {
    checkTtlMs(ttlMs)
    const l = this.#own(lease)
    const st = l.state
    const cas = this.#casAsIs(l) ?? (await this.#verifiedCas(l))
    if (cas === null) return null
    const start = this.clock.now()
    // every write changes the CAS: from the first extension on, the value carries the acquire fence for inspect()
    const value = st.value.includes('"fence":') ? st.value : withFence(st.value, l.fence)
    let reply: MetaReply
    try {
      reply = await st.conn.metaSet(st.wire, value, ['T' + serverTtlSeconds(ttlMs), 'C' + cas, 'c'])
    } catch (err) {
      // memcached unlinks the existing item when a store to its key cannot get memory (1.6.18,
      // "avoid stale data", whatever the CAS): the lease is gone, not merely unrenewed
      if (err instanceof ServerError && err.kind === 'SERVER_ERROR' && /out of memory|too large/.test(err.message)) return null
      throw err
    }
    if (reply.status === 'HD') {
      return new MemcachedLease(l.key, l.token, l.fence, start + ttlMs - driftMs(ttlMs), l.server, {
        ...st,
        value,
        cas: casOf(st.conn, reply, 'ms C'),
        generation: st.conn.generation,
      })
    }
    if (reply.status === 'EX' || reply.status === 'NF') return null
    throw unexpected(st.conn, 'ms C', reply)
  }

  async delete(lease: Lease): Promise<boolean> {
    const l = this.#own(lease)
    const st = l.state
    const cas = this.#casAsIs(l) ?? (await this.#verifiedCas(l))
    if (cas === null) return false
    // a compare-and-expire store instead of md: waiters watching `watch mutations` see it (deletes are not logged)
    const reply = this.options.releaseAsStore
      ? await st.conn.metaSet(st.wire, '', ['T-1', 'C' + cas])
      : await st.conn.metaDelete(st.wire, ['C' + cas])
    if (reply.status === 'HD') return true
    if (reply.status === 'EX' || reply.status === 'NF') return false
    throw unexpected(st.conn, 'release', reply)
  }

  async inspect(key: string): Promise<LockInfo | null> {
    const wire = encodeKey(this.options.prefix, key)
    const conn = this.client.connectionFor(wire)
    const reply = await conn.metaGet(wire, ['v', 'c', 't'])
    if (reply.status === 'EN') return null
    if (reply.status !== 'VA') throw unexpected(conn, 'mg', reply)
    const { token, owner, fence } = parseValue(reply.value as Buffer)
    const t = Number(reply.flags.t)
    const id = conn.identity as ServerIdentity
    return {
      key,
      token,
      owner,
      remainingMs: t < 0 ? null : t * 1000,
      // never extended: the item's CAS is still the acquire CAS
      fence: fence ?? makeFence(id.bootEpoch, BigInt(reply.flags.c ?? '0')),
      server: conn.name,
    }
  }

  async forceDelete(key: string): Promise<boolean> {
    const wire = encodeKey(this.options.prefix, key)
    const conn = this.client.connectionFor(wire)
    const got = await conn.metaGet(wire, ['v', 'c'])
    if (got.status === 'EN') return false
    // compare-and-expire on what we just saw, so watchers are woken; if it changed meanwhile, delete whatever is there
    const reply = await conn.metaSet(wire, '', ['T-1', 'C' + (got.flags.c ?? '0')])
    if (reply.status === 'HD') return true
    const del = await conn.metaDelete(wire, [])
    return del.status === 'HD'
  }

  watchLease(lease: Lease, onLost: (reason: StoreLossReason, cause?: Error) => void): () => void {
    const l = this.#own(lease)
    const conn = l.state.conn
    let set = this.#watches.get(conn)
    if (!set) {
      set = new Set()
      this.#watches.set(conn, set)
    }
    const w: Watch = { lease: l, onLost }
    // the lease was taken on a connection that has since broken: it is already suspect
    if (conn.generation !== l.state.generation || conn.state !== 'ready') {
      queueMicrotask(() => onLost('disconnected'))
      return () => {}
    }
    set.add(w)
    return () => {
      set.delete(w)
    }
  }

  waitForRelease(key: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const wire = encodeKey(this.options.prefix, key)
    // an already-aborted signal never fires 'abort' again: the watcher would wait the full timeout
    if (!this.options.pushWakeups || this.#closed || signal?.aborted) return sleep(timeoutMs, signal)
    const conn = this.client.connectionFor(wire)
    let w = this.#watchers.get(conn)
    if (!w) {
      w = new ReleaseWatcher(conn.address, this.options.connection)
      this.#watchers.set(conn, w)
    }
    return w.wait(wire, timeoutMs, signal)
  }

  contendedSince(key: string, since: number): boolean {
    if (this.#watchers.size === 0) return false
    const wire = encodeKey(this.options.prefix, key)
    const w = this.#watchers.get(this.client.connectionFor(wire))
    // the watcher stamps with performance.now(); only comparable when the store runs on the same clock
    return w !== undefined && this.clock === monotonicClock && w.contendedSince(wire, since)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const w of this.#watchers.values()) w.close()
    this.#watchers.clear()
    if (this.#ownsClient) await this.client.close()
  }

  #own(lease: Lease): MemcachedLease {
    if (!(lease instanceof MemcachedLease)) {
      throw new InvalidArgumentError(`lease must be a lease created by a MemcachedStore, got ${describe(lease)}`)
    }
    return lease
  }

  /** The CAS to compare against: the lease's own, or (after a reconnect) the item's, if it still carries our token. */
  /**
   * The lease's own CAS, when it can be sent as is: only a ready connection of the lease's
   * generation sends at once to the server that holds the lease. While it (re)connects, the
   * generation has not moved yet but the request would be queued and sent to whatever answers
   * next: after a restart, a bare CAS can match another owner's item (the counter restarts at 1).
   */
  #casAsIs(l: MemcachedLease): string | null {
    const st = l.state
    return st.conn.generation === st.generation && st.conn.state === 'ready' ? st.cas : null
  }

  /** After a reconnect: the item's CAS, if the item still carries our token; null otherwise. */
  async #verifiedCas(l: MemcachedLease): Promise<string | null> {
    const st = l.state
    const got = await st.conn.metaGet(st.wire, ['v', 'c'])
    if (got.status !== 'VA') return null
    return parseValue(got.value as Buffer).token === l.token ? (got.flags.c as string) : null
  }

  #lose(conn: Connection, reason: StoreLossReason, cause?: Error): void {
    const set = this.#watches.get(conn)
    if (!set || set.size === 0) return
    this.#watches.delete(conn)
    for (const w of set) {
      try {
        w.onLost(reason, cause)
      } catch {
        // a listener's failure must not stop the others from hearing of the loss
      }
    }
  }

  #checkEviction(conn: Connection, id: ServerIdentity): void {
    const risk = evictionRisk(id.settings, serverTtlSeconds(this.options.maxTtlMs))
    if (!risk || this.#warned.has(conn.name)) return
    this.#warned.add(conn.name)
    this.options.onWarning(`memcached at ${conn.name} ${risk}`, conn.name)
  }

  /** With `refuseUnsafeServers`: the error refusing a server that may evict lock keys; null when safe. */
  #refusal(conn: Connection, id: ServerIdentity, ttlMs: number): UnsafeServerError | null {
    if (!this.options.refuseUnsafeServers) return null
    const risk = evictionRisk(id.settings, serverTtlSeconds(ttlMs))
    return risk ? new UnsafeServerError(`memcached at ${conn.name} ${risk}`, conn.name) : null
  }

  #cleanupAmbiguous(conn: Connection, wire: WireKey, token: string, ttlMs: number): void {
    const deadline = this.clock.now() + serverTtlSeconds(ttlMs) * 1000
    const attempt = (delay: number): void => {
      if (this.#closed || this.clock.now() + delay > deadline) return
      setTimeout(() => {
        void (async () => {
          try {
            const got = await conn.metaGet(wire, ['v', 'c'])
            if (got.status === 'VA' && parseValue(got.value as Buffer).token === token) {
              await conn.metaDelete(wire, ['C' + got.flags.c])
            }
          } catch {
            attempt(Math.min(delay * 2, 2000))
          }
        })()
      }, delay).unref()
    }
    attempt(50)
  }
}

/**
 * Says why a server could evict a lock key before its TTL, with the fix, or returns null.
 * Safe: `evictions off` (`-M`), or the temporary LRU on with `temporary_ttl` >= the lock TTL.
 */
export function evictionRisk(settings: Readonly<Record<string, string>>, ttlSeconds: number): string | null {
  if (settings.evictions === 'off') return null
  const tempTtl = Number(settings.temporary_ttl)
  if (settings.temp_lru === 'yes' && Number.isFinite(tempTtl) && tempTtl >= ttlSeconds) return null
  return (
    `may evict lock keys before their TTL (evictions on, ${settings.temp_lru === 'yes' ? `temporary_ttl=${settings.temporary_ttl} < ${ttlSeconds} s` : 'no temporary LRU'}). ` +
    `Fix: start it with -M (never evict; full memory then refuses new items), or with -o temporary_ttl=${Math.max(ttlSeconds, 61)} ` +
    `(items with a TTL up to that many seconds go to an LRU that is never evicted), ideally on servers dedicated to locks`
  )
}

let defaultOwnerPrefix: string | null = null
/** JSON of the owner description; the usual one (host, pid, since) is assembled from a cached prefix. */
function ownerJson(owner: OwnerInfo): string {
  if (owner.label === undefined && owner.host !== undefined && owner.pid === process.pid && typeof owner.since === 'number') {
    defaultOwnerPrefix ??= JSON.stringify({ host: owner.host, pid: owner.pid }).slice(0, -1)
    return defaultOwnerPrefix + ',"since":' + owner.since + '}'
  }
  return JSON.stringify(owner)
}

/** The stored value: `<token> <owner JSON>`; the JSON gains `"fence"` at the first extension. */
function parseValue(value: Buffer): { token: string; owner: OwnerInfo | null; fence: bigint | null } {
  const text = value.toString('utf8')
  const sp = text.indexOf(' ')
  if (sp === -1) return { token: text, owner: null, fence: null }
  let owner: OwnerInfo | null = null
  let fence: bigint | null = null
  try {
    const o = JSON.parse(text.slice(sp + 1)) as unknown
    if (o && typeof o === 'object') {
      const { fence: f, ...rest } = o as OwnerInfo & { fence?: unknown }
      owner = rest
      if (typeof f === 'string' && /^\d{1,40}$/.test(f)) fence = BigInt(f)
    }
  } catch {
    owner = null
  }
  return { token: text.slice(0, sp), owner, fence }
}

function withFence(value: string, fence: bigint): string {
  const sp = value.indexOf(' ')
  let owner: Record<string, unknown> = {}
  try {
    owner = JSON.parse(value.slice(sp + 1)) as Record<string, unknown>
  } catch {
    owner = {}
  }
  return value.slice(0, sp) + ' ' + JSON.stringify({ ...owner, fence: fence.toString() })
}

/** The CAS of a store's reply: memcached sends a decimal 64-bit unsigned integer; anything else is a protocol error. */
function casOf(conn: Connection, reply: MetaReply, what: string): string {
  const c = reply.flags.c
  // up to 19 digits always fits in 64 bits; only a 20-digit CAS needs the range check
  if (c === undefined || !/^\d{1,20}$/.test(c) || (c.length === 20 && BigInt(c) > 0xffffffffffffffffn)) {
    throw new ProtocolError(`${conn.name} answered ${what} with ${c === undefined ? 'no CAS' : `a bad CAS ${JSON.stringify(c.slice(0, 24))}`}`)
  }
  return c
}

function unexpected(conn: Connection, what: string, reply: MetaReply): ProtocolError {
  return new ProtocolError(`unexpected ${reply.status} from ${conn.name} to ${what}`)
}
