/**
 * The in-process store: the same contract as memcached, for single-process use and for tests
 * of application code. Time comes from an injectable monotonic clock, so tests can move time
 * without sleeping. Fault injection (`simulateRestart`, `evict`) lets tests exercise the
 * lost-lock paths of their own code.
 */
import { InvalidArgumentError } from '../errors.js'
import { describe, MAX_NAME_LENGTH } from '../protocol/keys.js'
import { sleep } from '../internal/sleep.js'
import { WakeList } from '../internal/wake-list.js'
import {
  monotonicClock,
  type Clock,
  type CreateResult,
  type Lease,
  type LockInfo,
  type LockStore,
  type OwnerInfo,
  type StoreLossReason,
} from './lock-store.js'
import { newToken } from './owner.js'
import { checkTtlMs } from './ttl.js'

interface Entry {
  readonly token: string
  readonly owner: OwnerInfo
  readonly fence: bigint
  expiresAt: number
}

class MemoryLease implements Lease {
  readonly server = 'memory'
  constructor(
    readonly key: string,
    readonly token: string,
    readonly fence: bigint,
    readonly validUntil: number,
    /** @internal */ readonly store: MemoryStore,
    /** @internal The store's restart count when the lease was granted. */ readonly epoch: number,
  ) {}
}

export interface MemoryStoreOptions {
  /** Monotonic clock in ms; inject one to control time in tests. @default performance.now */
  clock?: Clock
}

export class MemoryStore implements LockStore {
  readonly clock: Clock
  readonly #entries = new Map<string, Entry>()
  readonly #releaseWaiters = new WakeList()
  readonly #watches = new Set<{ lease: MemoryLease; onLost: (reason: StoreLossReason) => void }>()
  readonly #contended = new Map<string, number>()
  #fence = 0n
  /** Counts simulated restarts. */
  #epoch = 0
  #closed = false

  constructor(options: MemoryStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`options must be an object, got ${describe(options)}`)
    if (options.clock !== undefined && typeof options.clock?.now !== 'function') {
      throw new InvalidArgumentError(`clock must be an object with a now() method, got ${describe(options.clock)}`)
    }
    this.clock = options.clock ?? monotonicClock
  }

  async create(key: string, ttlMs: number, owner: OwnerInfo, options?: { wantRemaining?: boolean }): Promise<CreateResult> {
    checkKey(key)
    checkTtlMs(ttlMs)
    const now = this.clock.now()
    const cur = this.#live(key, now)
    if (cur) this.#contended.set(key, now)
    if (cur) return options?.wantRemaining ? { acquired: false, remainingMs: Math.max(0, cur.expiresAt - now) } : { acquired: false }
    const token = newToken()
    const fence = ++this.#fence
    this.#entries.set(key, { token, owner, fence, expiresAt: now + ttlMs })
    return { acquired: true, lease: new MemoryLease(key, token, fence, now + ttlMs, this, this.#epoch) }
  }

  async extend(lease: Lease, ttlMs: number): Promise<Lease | null> {
    checkTtlMs(ttlMs)
    const l = this.#own(lease)
    const now = this.clock.now()
    const cur = this.#live(l.key, now)
    if (!cur || cur.token !== l.token) return null
    cur.expiresAt = now + ttlMs
    return new MemoryLease(l.key, l.token, l.fence, now + ttlMs, this, l.epoch)
  }

  async delete(lease: Lease): Promise<boolean> {
    const l = this.#own(lease)
    const cur = this.#live(l.key, this.clock.now())
    if (!cur || cur.token !== l.token) return false
    this.#entries.delete(l.key)
    this.#wake(l.key)
    if (this.#contended.size > 10_000) this.#contended.clear()
    return true
  }

  async inspect(key: string): Promise<LockInfo | null> {
    checkKey(key)
    const now = this.clock.now()
    const cur = this.#live(key, now)
    if (!cur) return null
    return { key, token: cur.token, owner: cur.owner, remainingMs: cur.expiresAt - now, fence: cur.fence, server: 'memory' }
  }

  async forceDelete(key: string): Promise<boolean> {
    checkKey(key)
    const had = this.#live(key, this.clock.now()) !== undefined
    this.#entries.delete(key)
    if (had) this.#wake(key)
    return had
  }

  watchLease(lease: Lease, onLost: (reason: StoreLossReason) => void): () => void {
    const w = { lease: this.#own(lease), onLost }
    // granted before a (simulated) restart: already gone, as the memcached store reports it
    if (w.lease.epoch !== this.#epoch) {
      queueMicrotask(() => onLost('server-restarted'))
      return () => {}
    }
    this.#watches.add(w)
    return () => {
      this.#watches.delete(w)
    }
  }

  waitForRelease(key: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    // an already-aborted signal never fires 'abort' again
    if (this.#closed || signal?.aborted) return sleep(timeoutMs, signal)
    return this.#releaseWaiters.wait(key, timeoutMs, signal)
  }

  contendedSince(key: string, since: number): boolean {
    const t = this.#contended.get(key)
    return t !== undefined && t >= since
  }

  /** Fault injection: forget every lock, as a memcached restart does, and tell holders. */
  simulateRestart(): void {
    this.#epoch++
    const keys = [...this.#entries.keys()]
    this.#entries.clear()
    const watches = [...this.#watches]
    this.#watches.clear()
    for (const w of watches) w.onLost('server-restarted')
    for (const k of keys) this.#wake(k)
  }

  /** Fault injection: drop one lock silently, as an eviction does (nobody is told). */
  evict(key: string): boolean {
    return this.#entries.delete(key)
  }

  /** Number of locks currently held (expired ones excluded). */
  get size(): number {
    const now = this.clock.now()
    let n = 0
    for (const k of this.#entries.keys()) if (this.#live(k, now)) n++
    return n
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#releaseWaiters.wakeAll()
  }

  #live(key: string, now: number): Entry | undefined {
    const e = this.#entries.get(key)
    if (e && e.expiresAt <= now) {
      this.#entries.delete(key)
      return undefined
    }
    return e
  }

  #wake(key: string): void {
    this.#releaseWaiters.wake(key)
  }

  #own(lease: Lease): MemoryLease {
    if (!(lease instanceof MemoryLease) || lease.store !== this) {
      throw new InvalidArgumentError(`lease must be a lease created by this MemoryStore, got ${describe(lease)}`)
    }
    return lease
  }
}

function checkKey(key: unknown): void {
  // the same limits as the memcached store's keys, so code tested on this store runs there too
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_NAME_LENGTH || !key.isWellFormed()) {
    throw new InvalidArgumentError(`lock key must be a non-empty, well-formed string of at most ${MAX_NAME_LENGTH} characters, got ${describe(key)}`)
  }
}
