/**
 * Quorum mode (Redlock-style) over N independent memcached servers, for locks that must
 * survive the loss of a minority of them. A lock is held when a majority granted it (the same
 * owner token on each) and the time spent getting there still leaves validity; it is extended
 * on a majority and released everywhere. A server that restarted recently does not vote: its
 * uptime must exceed the longest lock TTL (the "delayed restart" rule), so it cannot grant a
 * lock that a crashed-and-forgotten majority member still held.
 *
 * Fencing tokens: each key has a counter on every server. After a grant, the new holder reads
 * the counters of the granting majority, takes the highest, and writes highest + 1 back to them
 * (safe: it holds the lock). Any two majorities share a server, so the next holder reads a value
 * at least as high and its token is strictly higher. The token is also never below the wall
 * clock in microseconds, so after a restart that loses the counters of a majority, tokens stay
 * monotonic unless clocks step back.
 */
import type { Connection } from '../client/connection.js'
import type { ServerHealth } from '../client/client.js'
import { InvalidArgumentError, LockUnavailableError } from '../errors.js'
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
import { MemcachedStore } from './memcached-store.js'
import { newToken } from './owner.js'
import { resolveServers, type MemcachedStoreOptions } from './store-options.js'
import { checkTtlMs, serverTtlSeconds } from './ttl.js'
import { DeleteRetries } from './delete-retries.js'
import { formatAddress } from '../client/server-address.js'

/** memcached's uptime starts near 2 s and ticks once a second. */
const RESTART_SLACK_MS = 3000

class QuorumLease implements Lease {
  constructor(
    readonly key: string,
    readonly token: string,
    readonly fence: bigint,
    readonly validUntil: number,
    readonly server: string,
    /** @internal The lease on each server that granted it (a slow server's late grant joins it). */
    readonly parts: ReadonlyMap<MemcachedStore, Lease>,
    /**
     * @internal Servers whose answer never came (the request failed): each may have stored the
     * token all the same, so the lock may be ours there too until the member's own background
     * cleanup of the ambiguous grant (by token) or the item's expiry removes it.
     */
    readonly unknown: ReadonlySet<MemcachedStore>,
  ) {}

  /** @internal Released (or replaced by an extension): a part that comes late is given back. */
  ended = false
}

export type QuorumStoreOptions = Omit<MemcachedStoreOptions, 'client'>

export class QuorumStore implements LockStore {
  readonly clock: Clock
  /** One store per server: each is an independent voter. */
  readonly members: readonly MemcachedStore[]
  /** Votes needed: a majority of the servers. */
  readonly quorum: number
  readonly #maxTtlMs: number
  readonly #readyAt = new Map<Connection, number>()
  /** Lease watches by key and token: an extension re-watches the servers that extended it. */
  readonly #watches = new Map<string, LeaseWatch>()
  /** Part deletes a member did not hear, tried again in the background (see `#deletePart`). */
  readonly #partRetries: DeleteRetries

  constructor(options: QuorumStoreOptions = {}) {
    const servers = resolveServers(options.servers)
    if (servers.length < 3) {
      throw new InvalidArgumentError(`quorum mode needs at least 3 independent servers (5 survive 2 failures), got ${servers.length}`)
    }
    this.clock = options.clock ?? monotonicClock
    this.#partRetries = new DeleteRetries(this.clock)
    this.#maxTtlMs = options.maxTtlMs === undefined ? 60_000 : checkTtlMs(options.maxTtlMs, 'maxTtlMs')
    this.members = servers.map((address) => {
      const m = new MemcachedStore({ ...options, servers: [address], clock: this.clock })
      m.client.on('ready', (conn: Connection) => this.#readyAt.set(conn, this.clock.now()))
      return m
    })
    this.quorum = Math.floor(servers.length / 2) + 1
    this.label = `quorum(${servers.map(formatAddress).join(',')})`
  }

  /** `quorum(host:port,...)`: what leases report as their server. */
  readonly label: string

  async create(key: string, ttlMs: number, owner: OwnerInfo, options?: CreateOptions): Promise<CreateResult> {
    checkTtlMs(ttlMs)
    const token = options?.token ?? newToken()
    const members = this.members
    /** Grants of voting servers: the lease's parts once acquired (late grants join them). */
    const granted = new Map<MemcachedStore, Lease>()
    const unknown = new Set<MemcachedStore>()
    const cleanups: Promise<unknown>[] = []
    let refused = 0
    let tooYoung = 0
    let firstError: unknown
    let remainingMs: number | undefined
    /** The attempt failed: grants that come later are given back. */
    let givenBack = false
    let acquired: QuorumLease | null = null
    const giveBack = (m: MemcachedStore, lease: Lease): void => {
      cleanups.push(this.#deletePart(m, lease).catch(() => {}))
    }
    await untilDecided(
      members.map((m) => m.create(key, ttlMs, owner, { wantRemaining: options?.wantRemaining, token })),
      (i, r) => {
        const m = members[i] as MemcachedStore
        if (r.status === 'rejected') {
          firstError ??= r.reason
          unknown.add(m)
        } else if (!r.value.acquired) {
          refused++
          if (r.value.remainingMs !== undefined) remainingMs = Math.max(remainingMs ?? 0, r.value.remainingMs)
        } else if (!this.#votes(m, ttlMs)) {
          // a server that restarted too recently must not hold a grant it cannot vote for
          tooYoung++
          giveBack(m, r.value.lease)
        } else if (givenBack || acquired?.ended) {
          // nor may a grant that comes after the attempt failed, or after the lease was released
          giveBack(m, r.value.lease)
        } else {
          granted.set(m, r.value.lease)
          if (acquired) this.#watches.get(watchId(acquired))?.add(m, r.value.lease)
        }
      },
      // a majority granted, or refused: a server that is slow to answer does not hold up the others
      // (short of that, every answer counts: "unreachable" and "held" must not be confused)
      () => granted.size >= this.quorum || refused >= this.quorum,
    )
    const validUntil = Math.min(...[...granted.values()].map((l) => l.validUntil))
    if (granted.size >= this.quorum && validUntil > this.clock.now()) {
      let fence: bigint
      try {
        fence = await this.#nextFence(key, [...granted.keys()])
      } catch (err) {
        givenBack = true
        await Promise.all([...cleanups, this.#releaseParts(granted)])
        throw err
      }
      acquired = new QuorumLease(key, token, fence, validUntil, this.label, granted, unknown)
      return { acquired: true, lease: acquired }
    }
    givenBack = true
    // give back partial grants before answering, so a failed attempt leaves nothing locked
    await Promise.all([...cleanups, this.#releaseParts(granted)])
    // fewer than a majority of voting servers answered: a failure of the backend, not "held by someone else"
    if (granted.size + refused < this.quorum) {
      const why =
        firstError ??
        new Error(
          `${tooYoung} of ${members.length} servers restarted less than ${serverTtlSeconds(Math.max(this.#maxTtlMs, ttlMs)) + RESTART_SLACK_MS / 1000} s ago and may not vote yet (a restarted server may have forgotten locks); ${this.quorum} votes are needed`,
        )
      throw new LockUnavailableError(key, { cause: why })
    }
    return remainingMs === undefined ? { acquired: false } : { acquired: false, remainingMs }
  }

  async extend(lease: Lease, ttlMs: number): Promise<Lease | null> {
    checkTtlMs(ttlMs)
    const l = this.#own(lease)
    const parts = [...l.parts]
    const kept = new Map<MemcachedStore, Lease>()
    // a part whose extension failed may still carry the token (on its old TTL)
    const unknown = new Set(l.unknown)
    const failures: unknown[] = []
    let refused = 0
    let extended: QuorumLease | null = null
    let dropped = false
    await untilDecided(
      parts.map(([m, p]) => m.extend(p, ttlMs)),
      (i, r) => {
        const m = (parts[i] as [MemcachedStore, Lease])[0]
        if (r.status === 'rejected') {
          failures.push(r.reason)
          unknown.add(m)
        }
        else if (!r.value) refused++
        // a late extension joins the new lease, unless that is already gone
        else if (dropped || extended?.ended) this.#deletePart(m, r.value).catch(() => {})
        else {
          kept.set(m, r.value)
          if (extended) this.#watches.get(watchId(extended))?.add(m, r.value)
        }
      },
      (answered) => kept.size >= this.quorum || kept.size + (parts.length - answered) < this.quorum,
    )
    const validUntil = Math.min(...[...kept.values()].map((p) => p.validUntil))
    if (kept.size >= this.quorum && validUntil > this.clock.now()) {
      l.ended = true
      extended = new QuorumLease(l.key, l.token, l.fence, validUntil, l.server, kept, unknown)
      this.#watches.get(watchId(l))?.reset(kept)
      return extended
    }
    if (parts.length - refused >= this.quorum && kept.size < parts.length - refused) {
      // not refused by a majority, only unreachable or slow: a backend failure (renewal retries until validity ends)
      throw failures[0] ?? new LockUnavailableError(l.key)
    }
    dropped = true
    await this.#releaseParts(kept)
    return null
  }

  async delete(lease: Lease): Promise<boolean> {
    const l = this.#own(lease)
    l.ended = true
    const parts = [...l.parts]
    let deleted = 0
    const failures: unknown[] = []
    // deleted everywhere it can be; the answer does not wait for a slow server once a majority deleted
    await untilDecided(
      parts.map(([m, p]) => this.#deletePart(m, p)),
      (_, r) => {
        if (r.status === 'rejected') failures.push(r.reason)
        else if (r.value) deleted++
      },
      () => deleted >= this.quorum,
    )
    // parts whose delete failed, and servers that never answered the grant, may still carry our
    // token: while they could form a majority, the lock may still be ours, and that is an error
    // (the caller's factory tries again), not "gone"
    const maybeOurs = failures.length + l.unknown.size
    if (deleted < this.quorum && maybeOurs >= this.quorum) throw failures[0] ?? new LockUnavailableError(l.key)
    // short of that, no majority is ours any more (failed parts are tried again in the background).
    // It was ours up to the release unless the parts that answered "not ours" leave too few: only
    // then is the answer false (the lease had been lost). Counting a failed part as "not ours"
    // turned a release with one unreachable member of a two-part lease into a false loss.
    return deleted + maybeOurs >= this.quorum
  }

  async inspect(key: string): Promise<LockInfo | null> {
    const n = this.members.length
    const byToken = new Map<string, LockInfo[]>()
    let answered = 0
    let failed = 0
    let firstError: unknown
    const largest = (): number => Math.max(0, ...[...byToken.values()].map((infos) => infos.length))
    // a member that failed to answer may hold anything: it counts for every holder
    await untilDecided(
      this.members.map((m) => m.inspect(key)),
      (_, r) => {
        answered++
        if (r.status === 'rejected') {
          failed++
          firstError ??= r.reason
        } else if (r.value) {
          byToken.set(r.value.token, [...(byToken.get(r.value.token) ?? []), r.value])
        }
      },
      // held by a majority, or no holder can reach one with the answers still out: a silent
      // member does not hold up the answer
      () => largest() >= this.quorum || largest() + (n - answered) < this.quorum,
    )
    for (const infos of byToken.values()) {
      if (infos.length >= this.quorum) {
        const first = infos[0] as LockInfo
        const counters = await this.#readFence(key, this.members, this.quorum)
        // short of a majority of counters the fence is unknown (a member's own fence is not on the quorum's scale)
        if (counters.read < this.quorum) throw new LockUnavailableError(key, { cause: firstError })
        const remaining = infos.map((i) => i.remainingMs).filter((x): x is number => x !== null)
        return { ...first, fence: counters.highest, remainingMs: remaining.length ? Math.min(...remaining) : null, server: this.label }
      }
    }
    // free only if no holder could have a majority even with every member that failed or is still out
    if (largest() + (n - answered) + failed >= this.quorum) throw new LockUnavailableError(key, { cause: firstError })
    return null
  }

  async forceDelete(key: string): Promise<boolean> {
    const results = await Promise.allSettled(this.members.map((m) => m.forceDelete(key)))
    return results.some((r) => r.status === 'fulfilled' && r.value)
  }

  watchLease(lease: Lease, onLost: (reason: StoreLossReason, cause?: Error) => void): () => void {
    const l = this.#own(lease)
    let fired = false
    let alive = 0
    let unsubs: (() => void)[] = []
    const add = (m: MemcachedStore, part: Lease): void => {
      if (fired) return
      alive++
      unsubs.push(
        m.watchLease(part, (reason, cause) => {
          alive--
          // a lease survives the loss of a minority of its servers
          if (!fired && alive < this.quorum) {
            fired = true
            onLost(reason, cause)
          }
        }),
      )
    }
    const watch: LeaseWatch = {
      add,
      reset: (parts) => {
        if (fired) return
        for (const u of unsubs) u()
        unsubs = []
        alive = 0
        for (const [m, part] of parts) add(m, part)
      },
    }
    watch.reset(l.parts)
    // each extension counts again from the servers that extended it, so a server that dropped
    // its connection and came back with the lease counts again (no false loss after brief
    // disconnects of several members over a long hold); a server that answers late is added
    const id = watchId(l)
    this.#watches.set(id, watch)
    return () => {
      for (const u of unsubs) u()
      if (this.#watches.get(id) === watch) this.#watches.delete(id)
    }
  }

  waitForRelease(key: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const ac = new AbortController()
    const combined = signal ? AbortSignal.any([signal, ac.signal]) : ac.signal
    // the first push from any server wakes the waiter
    return Promise.race(this.members.map((m) => m.waitForRelease(key, timeoutMs, combined))).finally(() => ac.abort())
  }

  contendedSince(key: string, since: number): boolean {
    return this.members.some((m) => m.contendedSince(key, since))
  }

  health(): ServerHealth[] {
    return this.members.flatMap((m) => m.health())
  }

  async close(): Promise<void> {
    this.#partRetries.close()
    await Promise.all(this.members.map((m) => m.close()))
  }

  /** Whether a server may vote now: up for longer than the longest lock TTL (plus the slack of memcached's coarse uptime). */
  #votes(m: MemcachedStore, ttlMs: number): boolean {
    const conn = m.client.connections[0] as Connection
    const id = conn.identity
    const readAt = this.#readyAt.get(conn)
    if (!id || readAt === undefined) return false
    const uptimeMs = id.uptime * 1000 + (this.clock.now() - readAt)
    // the items it forgot lived at most their server TTL; memcached reports an uptime of about 2 s
    // at start and counts whole seconds: allow 3 s on top
    return uptimeMs >= serverTtlSeconds(Math.max(this.#maxTtlMs, ttlMs)) * 1000 + RESTART_SLACK_MS
  }

  async #nextFence(key: string, granted: MemcachedStore[]): Promise<bigint> {
    const { highest } = await this.#readFence(key, granted)
    const floor = BigInt(Date.now()) * 1000n
    const next = (highest >= floor ? highest : floor) + 1n
    const writes = await Promise.allSettled(granted.map((m) => m.writeFenceCounter(key, next)))
    if (writes.filter((w) => w.status === 'fulfilled').length < this.quorum) {
      throw new LockUnavailableError(key, { cause: (writes.find((w) => w.status === 'rejected') as PromiseRejectedResult | undefined)?.reason })
    }
    return next
  }

  /**
   * The highest fence counter of `members` and how many were read, once `enough` of them
   * answered (all by default). Any majority shares a server with the majority the holder wrote
   * its token to, so a majority's highest counter is at least the holder's token.
   */
  async #readFence(key: string, members: readonly MemcachedStore[], enough = members.length): Promise<{ highest: bigint; read: number }> {
    let highest = 0n
    let read = 0
    await untilDecided(
      members.map((m) => m.readFenceCounter(key)),
      (_, r) => {
        if (r.status !== 'fulfilled') return
        read++
        if (r.value > highest) highest = r.value
      },
      () => read >= enough,
    )
    return { highest, read }
  }

  /** Deletes the parts (owner-checked); never rejects. */
  async #releaseParts(parts: ReadonlyMap<MemcachedStore, Lease>): Promise<void> {
    await Promise.allSettled([...parts].map(([m, p]) => this.#deletePart(m, p)))
  }

  /**
   * Deletes one member's part of a lease (owner-checked); when the member does not answer, the
   * delete is tried again in the background (see DeleteRetries): a part left on a member is a vote
   * nobody else can get, and until it expires, the failure of one more member would leave the key
   * without a majority. The returned promise is the first attempt's.
   */
  #deletePart(m: MemcachedStore, part: Lease): Promise<boolean> {
    const attempt = m.delete(part)
    attempt.catch((err: unknown) => this.#partRetries.start(part, () => m.delete(part), err))
    return attempt
  }

  #own(lease: Lease): QuorumLease {
    if (!(lease instanceof QuorumLease)) throw new TypeError('lease was not created by this QuorumStore')
    return lease
  }
}

/** A lease's watch over its servers (see `watchLease`). */
interface LeaseWatch {
  /** Also watch a server that answered late. */
  add(m: MemcachedStore, part: Lease): void
  /** Watch exactly these servers, counting from them again. */
  reset(parts: ReadonlyMap<MemcachedStore, Lease>): void
}

function watchId(l: QuorumLease): string {
  return l.key + '\0' + l.token
}

/**
 * Waits for the servers' answers until `decided(answered)` is true or every server answered.
 * `onAnswer` sees every answer, also those that come after the decision (to adopt or give back).
 */
function untilDecided<T>(
  attempts: readonly Promise<T>[],
  onAnswer: (index: number, result: PromiseSettledResult<T>) => void,
  decided: (answered: number) => boolean,
): Promise<void> {
  return new Promise<void>((resolve) => {
    let answered = 0
    if (attempts.length === 0) return resolve()
    attempts.forEach((attempt, i) => {
      const settle = (result: PromiseSettledResult<T>): void => {
        answered++
        onAnswer(i, result)
        if (answered === attempts.length || decided(answered)) resolve()
      }
      attempt.then(
        (value) => settle({ status: 'fulfilled', value }),
        (reason: unknown) => settle({ status: 'rejected', reason }),
      )
    })
  })
}
