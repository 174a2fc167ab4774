/**
 * The entry point: a lock factory over one store. It creates mutexes and reentrant locks,
 * runs scoped work under a lock, wraps functions, and reports what happens to every lock
 * through events. All lock kinds share its per-key wait queues, so waiters of one key in this
 * process are served in order by a single poller.
 */
import { EventEmitter } from 'node:events'
import {
  ClosedError,
  InvalidArgumentError,
  LockAbortedError,
  LockTimeoutError,
  LockUnavailableError,
  type LockLostError,
} from '../errors.js'
import { describe, MAX_NAME_LENGTH } from '../protocol/keys.js'
import type { CreateResult, Lease, LockInfo, LockStore } from '../store/lock-store.js'
import type { MemcachedClient, ServerHealth } from '../client/client.js'
import type { Connection, ConnectionState } from '../client/connection.js'
import { MemcachedStore } from '../store/memcached-store.js'
import { DeleteRetries } from '../store/delete-retries.js'
import { QuorumStore } from '../store/quorum-store.js'
import type { MemcachedStoreOptions } from '../store/store-options.js'
import { defaultOwner } from '../store/owner.js'
import { LockHandle, type HandleHooks } from './lock-handle.js'
import { checkInt, resolveAcquireOptions, type AcquireOptions, type ResolvedAcquireOptions } from './lock-options.js'
import { Mutex } from './mutex.js'
import { LockOwner, ReentrantLock, type ReentrantAcquireOptions, type ReentrantHandle } from './reentrant-lock.js'
import { Serializer, type SerializerOptions } from './serializer.js'
import { TimerWheel } from './timer-wheel.js'
import { WaitQueue } from './wait-queue.js'
import { SKIP_LOCK, wrapWithLock, type KeyFunction, type WrapOptions } from './wrap.js'
import { isOptionsObject } from '../internal/objects.js'

/** Options of {@link Locks}: a store, or the options of a memcached store to create. */
export interface LocksOptions extends MemcachedStoreOptions {
  /** Use this store (e.g. `new MemoryStore()`); it is not closed with the factory. @default a MemcachedStore built from the other options */
  store?: LockStore
  /**
   * Quorum mode: the servers are independent voters and a lock is held when a majority granted
   * it (needs 3 or more servers). Off: keys are spread over the servers (ketama) with no
   * failover. @default false
   */
  quorum?: boolean
  /** Defaults for every acquisition made through this factory. */
  defaults?: AcquireOptions
  /**
   * Fair hand-over: after releasing a lock that other clients were trying to take, this process
   * waits this long before trying to take it again, so a woken remote waiter gets it first.
   * 0 disables it (the releasing process then usually wins again). @default 1
   */
  handoffYieldMs?: number
}

/** The shortest yield after a long hold (see `yieldAfterLongHold`). */
const LONG_HOLD_YIELD_MS = 5
/** An attempt that found a key taken within this window makes it "recently contended" (see `recentlyContended`). */
const CONTENDED_WINDOW_MS = 5000

/** Marks Locks instances across copies of the library (the ESM and CommonJS builds are two classes). */
const LOCKS_BRAND = Symbol.for('memcached-lock.Locks')

/** @internal Whether `value` is a `Locks` factory of this build or of the other one (where `instanceof` fails). */
export function isLocks(value: unknown): value is Locks {
  return value instanceof Locks || (typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[LOCKS_BRAND] === true)
}

/**
 * Events:
 * - `acquired` (key, handle) · `released` (key, handle, deleted: boolean)
 * - `lost` (key, error: LockLostError, handle): a lease ended other than by release
 * - `unlocked` (key, cause): the `proceed` policy ran code without the lock because the store failed
 * - `renewal-error` (key, error): a renewal or release attempt failed (the lease may still be valid)
 * - `warning` (message, server): a server could evict lock keys (see the README)
 * - `server-state` (server, state): a server's connection changed state (`ready`, `down`...)
 * - `server-restart` (server): a server came back with a new pid or boot epoch (its locks are gone)
 */
export class Locks extends EventEmitter {
  /** @internal See {@link isLocks}. */
  get [LOCKS_BRAND](): true {
    return true
  }

  readonly store: LockStore
  readonly defaults: AcquireOptions
  readonly #ownsStore: boolean
  readonly #queues = new Map<string, WaitQueue>()
  /** Holders per key in this process (a queue exists only while someone here waits). */
  readonly #holders = new Map<string, number>()
  readonly #active = new Set<LockHandle>()
  readonly #handoffYieldMs: number
  #wheel!: TimerWheel
  #closed = false
  /** Attempts of `tryOnce` in flight (see `#create`). */
  readonly #creating = new Set<Promise<unknown>>()
  /**
   * Releases the server did not hear (the caller got the error), tried again in the background.
   * The store's delete is owner-checked (by CAS, or by token after a reconnect): a retry never
   * removes a later holder's lock.
   */
  readonly #releaseRetries: DeleteRetries
  /** Keys whose next release ends a long hold (see `yieldAfterLongHold`). */
  readonly #longHolds = new Set<string>()

  constructor(options: LocksOptions = {}) {
    super()
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`options must be an object, got ${describe(options)}`)
    const { store, defaults, handoffYieldMs, quorum, ...storeOptions } = options
    this.#handoffYieldMs = checkInt(handoffYieldMs ?? 1, 'handoffYieldMs', 0, 1000)
    if (store !== undefined) {
      if (typeof store?.create !== 'function') throw new InvalidArgumentError(`store must implement LockStore, got ${describe(store)}`)
      this.store = store
      this.#ownsStore = false
    } else {
      const o = { ...storeOptions, onWarning: storeOptions.onWarning ?? ((message: string, server: string) => this.#warn(message, server)) }
      if (quorum !== undefined && typeof quorum !== 'boolean') throw new InvalidArgumentError(`quorum must be a boolean, got ${describe(quorum)}`)
      this.store = quorum ? new QuorumStore(o) : new MemcachedStore(o)
      this.#ownsStore = true
    }
    for (const client of clientsOf(this.store)) {
      client.on('state', (conn: Connection, state: ConnectionState) => this.emit('server-state', conn.name, state))
      client.on('restart', (conn: Connection) => this.emit('server-restart', conn.name))
    }
    const clock = this.store.clock
    this.#wheel = new TimerWheel(() => clock.now())
    this.#releaseRetries = new DeleteRetries(clock)
    if (defaults !== undefined && !isOptionsObject(defaults)) {
      throw new InvalidArgumentError(`defaults must be an object of acquire options, got ${describe(defaults)}`)
    }
    this.defaults = { ...defaults }
    resolveAcquireOptions(undefined, this.defaults, { autoRenew: false })
  }

  /** A primitive (non-reentrant) lock on `key`. Cheap: create one per use or keep it. */
  mutex(key: string, defaults?: AcquireOptions): Mutex {
    return new Mutex(this, checkKeyArg(key), this.#lockDefaults(defaults))
  }

  /** A lock that the same async context (or explicit {@link LockOwner}) may acquire again without waiting. */
  reentrant(key: string, defaults?: AcquireOptions): ReentrantLock {
    return new ReentrantLock(this, checkKeyArg(key), this.#lockDefaults(defaults))
  }

  /** A lock's defaults over the factory's, checked now rather than at every acquisition. */
  #lockDefaults(defaults: AcquireOptions | undefined): AcquireOptions {
    resolveAcquireOptions(defaults, this.defaults, { autoRenew: false })
    return { ...this.defaults, ...defaults }
  }

  /** An explicit owner for reentrancy across async contexts (pass it as `owner` to a reentrant lock). */
  createOwner(): LockOwner {
    return new LockOwner()
  }

  /** Acquires `key`, runs `fn` with the handle (its `signal` aborts if the lock is lost), releases in all cases. Renews by default. */
  async withLock<T>(key: string, fn: (handle: LockHandle) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    return this.mutex(key).withLock(fn, options)
  }

  /** Like {@link withLock} with a reentrant lock: nested calls for the same key in the same async call tree do not wait. */
  async withReentrantLock<T>(key: string, fn: (handle: ReentrantHandle) => Promise<T> | T, options?: ReentrantAcquireOptions): Promise<T> {
    return this.reentrant(key).withLock(fn, options)
  }

  /**
   * Wraps `fn` so every call runs under the lock named by `options.key(...args)` (called with
   * the call's `this`). The key function may return {@link SKIP_LOCK} to run that call unlocked.
   */
  wrap<A extends unknown[], R>(fn: (...args: A) => Promise<R> | R, options: WrapOptions<A>): (...args: A) => Promise<R> {
    return wrapWithLock(this, fn, options)
  }

  /**
   * A writer serializer for an optimistic-concurrency store: each `run(key, fn)` holds the
   * object's lock from before the read until after the commit and retries conflicts under it.
   */
  serializer(options: SerializerOptions): Serializer {
    return new Serializer(this, options)
  }

  /** Per-server state (`idle`, `connecting`, `ready`, `down`, `closed`) with identity and last error. */
  health(): ServerHealth[] {
    return clientsOf(this.store).flatMap((c) => c.health())
  }

  /** Who holds `key` right now, or null when it is free. */
  async inspect(key: string): Promise<LockInfo | null> {
    return this.store.inspect(checkKeyArg(key))
  }

  /** Deletes `key` whoever holds it (operators only: the holder loses mutual exclusion). */
  async forceRelease(key: string): Promise<boolean> {
    return this.store.forceDelete(checkKeyArg(key))
  }

  /** Releases every lock this factory still holds, then closes the store it created. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#releaseRetries.close()
    // waits end now with ClosedError (not "unavailable": nobody may run unlocked because of a close);
    // attempts already sent finish first, so a lock they took is handed back, not left behind
    const closed = new ClosedError('this Locks factory was closed')
    for (const q of this.#queues.values()) q.closeAll(closed)
    await Promise.allSettled([...this.#creating, ...[...this.#queues.values()].map((q) => q.settled())])
    await Promise.allSettled([...this.#active].map((h) => h.release()))
    if (this.#ownsStore) await this.store.close()
  }

  /** @internal One attempt; null when held by someone else. */
  async tryOnce(key: string, o: ResolvedAcquireOptions, requestedAt = this.store.clock.now()): Promise<LockHandle | null> {
    this.#checkOpen()
    // cancelled before the attempt: do not take a lock nobody will use
    if (o.signal?.aborted) throw new LockAbortedError(key, { cause: o.signal.reason })
    let result
    try {
      result = await this.#create(key, o)
    } catch (error) {
      return this.#unavailable(key, o, error)
    }
    if (!result.acquired) return null
    if (result.lease.validUntil <= this.store.clock.now()) {
      this.store.delete(result.lease).catch(() => {})
      return null
    }
    this.#holderStarted(key)
    return this.#handle(key, result.lease, o, { waited: false, requestedAt })
  }

  /** One attempt, tracked so that `close` waits for it; a lock it takes after `close` began is handed back. */
  #create(key: string, o: ResolvedAcquireOptions): Promise<CreateResult> {
    const attempt = (async () => {
      const result = await this.store.create(key, o.ttlMs, defaultOwner(o.label))
      return result.acquired && this.#closed ? this.#handBack(result.lease) : result
    })()
    this.#creating.add(attempt)
    const settled = (): void => {
      this.#creating.delete(attempt)
    }
    attempt.then(settled, settled)
    return attempt
  }

  /** @internal Whether an attempt in this process found `key` taken recently (within {@link CONTENDED_WINDOW_MS}). */
  recentlyContended(key: string): boolean {
    return this.#queues.get(key)?.contendedWithin(CONTENDED_WINDOW_MS) ?? false
  }

  /**
   * @internal After a long hold of `key` (a serializer batch that used its turn; call it before the
   * release): lets waiters elsewhere take it before this process tries again, for long enough that
   * a waiter woken by a push or polling every millisecond gets there first. The yield counts from
   * when the release is heard (under load its round trip can outlast the yield).
   */
  yieldAfterLongHold(key: string): void {
    if (this.#handoffYieldMs === 0) return
    this.#queue(key).yieldFor(Math.max(this.#handoffYieldMs, LONG_HOLD_YIELD_MS))
    this.#longHolds.add(key)
  }

  /** @internal Waits up to `o.waitMs` in this process's queue for `key`. */
  async waitFor(key: string, o: ResolvedAcquireOptions): Promise<LockHandle> {
    this.#checkOpen()
    const requestedAt = this.store.clock.now()
    if (o.waitMs === 0) {
      const h = await this.tryOnce(key, o, requestedAt)
      if (h) return h
      throw new LockTimeoutError(key, 0)
    }
    if (o.signal?.aborted) {
      throw new LockAbortedError(key, { cause: o.signal.reason })
    }
    // fast path: nobody here waits for this key, so one plain attempt first
    if (!this.#queues.has(key)) {
      const h = await this.tryOnce(key, o, requestedAt)
      if (h) return h
    }
    const outcome = await this.#queue(key).wait(o, defaultOwner(o.label))
    if ('error' in outcome) return this.#unavailable(key, o, outcome.error)
    if (this.#closed) return this.#handBack(outcome.lease)
    return this.#handle(key, outcome.lease, o, { waited: true, requestedAt })
  }

  /** A lease taken while `close` ran: delete it, and fail the acquisition with ClosedError. */
  async #handBack(lease: Lease): Promise<never> {
    await this.store.delete(lease).catch(() => {})
    throw new ClosedError('this Locks factory was closed while the lock was being acquired')
  }

  #unavailable(key: string, o: ResolvedAcquireOptions, error: unknown): LockHandle {
    // a bad argument is the caller's bug, not an unreachable store: never run unlocked for it
    if (error instanceof InvalidArgumentError) throw error
    // nor a closed factory or store: closing is not an outage
    if (error instanceof ClosedError) throw error
    if (this.#closed) throw new ClosedError('this Locks factory was closed', { cause: error })
    if (o.onUnavailable !== 'proceed') throw error instanceof LockUnavailableError && error.key === key ? error : new LockUnavailableError(key, { cause: error })
    this.emit('unlocked', key, error)
    return new LockHandle(key, null, null, { ttlMs: o.ttlMs, autoRenew: false, renewAt: o.renewAt, wheel: this.#wheel }, this.#hooks)
  }

  #handle(
    key: string,
    lease: NonNullable<Awaited<ReturnType<LockStore['extend']>>>,
    o: ResolvedAcquireOptions,
    acquisition: { waited: boolean; requestedAt: number },
  ): LockHandle {
    const h = new LockHandle(key, lease, this.store, { ttlMs: o.ttlMs, autoRenew: o.autoRenew, renewAt: o.renewAt, wheel: this.#wheel }, this.#hooks, acquisition)
    this.#active.add(h)
    this.emit('acquired', key, h)
    return h
  }

  readonly #hooks: HandleHooks = {
    onReleasing: (h) => {
      // a key contended here recently: ask the waiting line whether others wait (same write as the release)
      if (this.#handoffYieldMs === 0 || !this.store.hasWaiters || !this.recentlyContended(h.key)) return null
      return this.store.hasWaiters(h.key)
    },
    onReleased: (h, deleted, contended) => {
      const longHold = this.#longHolds.delete(h.key)
      // others were waiting for it: let them have it before this process tries again
      if (deleted && this.#handoffYieldMs > 0 && (contended || this.store.contendedSince?.(h.key, h.requestedAt))) {
        this.#queue(h.key).yieldFor(this.#handoffYieldMs)
      }
      // the long hold's yield again, from when the release was heard
      if (deleted && longHold) this.#queue(h.key).yieldFor(Math.max(this.#handoffYieldMs, LONG_HOLD_YIELD_MS))
      this.#end(h)
      this.emit('released', h.key, h, deleted)
    },
    onLost: (h, error: LockLostError) => {
      this.#end(h)
      this.emit('lost', h.key, error, h)
    },
    onRenewalError: (h, error) => {
      this.emit('renewal-error', h.key, error)
    },
    onReleaseFailed: (_, lease) => this.#releaseRetries.start(lease, () => this.store.delete(lease)),
  }

  #end(h: LockHandle): void {
    // only held handles are active; a handle ends once (a release after a loss ends nothing more)
    if (!this.#active.delete(h)) return
    const n = (this.#holders.get(h.key) ?? 1) - 1
    if (n > 0) this.#holders.set(h.key, n)
    else this.#holders.delete(h.key)
    this.#queues.get(h.key)?.holderEnded()
  }

  #holderStarted(key: string): void {
    this.#holders.set(key, (this.#holders.get(key) ?? 0) + 1)
  }

  #queue(key: string): WaitQueue {
    let q = this.#queues.get(key)
    if (!q) {
      const created: WaitQueue = new WaitQueue(key, this.store, {
        holders: () => this.#holders.get(key) ?? 0,
        granted: () => this.#holderStarted(key),
        idle: () => {
          if (this.#queues.get(key) === created && created.idle) this.#queues.delete(key)
        },
      })
      q = created
      this.#queues.set(key, q)
    }
    return q
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('this Locks factory was closed')
  }

  #warnedServers = new Set<string>()
  #warn(message: string, server: string): void {
    if (this.#warnedServers.has(server)) return
    this.#warnedServers.add(server)
    if (this.listenerCount('warning') > 0) this.emit('warning', message, server)
    else process.emitWarning(message, { code: 'MEMCACHED_LOCK_EVICTION' })
  }
}

function clientsOf(store: LockStore): MemcachedClient[] {
  if (store instanceof MemcachedStore) return [store.client]
  if (store instanceof QuorumStore) return store.members.map((m) => m.client)
  return []
}

function checkKeyArg(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_NAME_LENGTH || !key.isWellFormed()) {
    throw new InvalidArgumentError(
      `lock key must be a non-empty, well-formed string of at most ${MAX_NAME_LENGTH} characters, got ${describe(key)}`,
    )
  }
  return key
}

export { SKIP_LOCK, type KeyFunction }
