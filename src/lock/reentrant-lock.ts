/**
 * The reentrant lock. In the original the owner was a thread; in Node it is the async context:
 * code running inside a hold (within `withLock`, or `handle.run`) may acquire the same key
 * again without waiting, and must release as many times. Other contexts in this process wait
 * like any remote client. The hold count lives here; the store holds a single lease.
 *
 * Holds are visible only to the code *inside* them: each hold runs its callback in a new,
 * immutable context map, so two parallel branches of one parent never share a hold by accident
 * (the failure mode of thread-bound reentrancy in async code). For code that crosses contexts,
 * pass an explicit {@link LockOwner}.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { InvalidArgumentError, LockLostError, LockNotHeldError } from '../errors.js'
import { describe } from '../protocol/keys.js'
import type { Lease, LockInfo } from '../store/lock-store.js'
import type { LockHandle } from './lock-handle.js'
import { resolveAcquireOptions, type AcquireOptions } from './lock-options.js'
import type { Locks } from './locks.js'
import { runScoped } from './scoped.js'
import { isOptionsObject } from '../internal/objects.js'

interface Hold {
  readonly base: LockHandle
  /** The factory and key it is a hold of (see {@link holdKey}). */
  readonly id: string
  count: number
  readonly owner: LockOwner | null
}

/** Per-context holds: hold id to hold. Replaced (never mutated) when a hold is entered. */
const context = new AsyncLocalStorage<ReadonlyMap<string, Hold>>()

/** An explicit reentrancy owner: every acquisition passing the same owner re-enters. */
export class LockOwner {
  /** @internal Holds by hold id. */
  readonly holds = new Map<string, Hold>()
  /** @internal Acquisitions in flight by hold id: a second one waits for the first, then re-enters. */
  readonly acquiring = new Map<string, Promise<ReentrantHandle>>()
}

const factoryIds = new WeakMap<Locks, number>()
let lastFactoryId = 0

/**
 * Holds are per factory and key: a hold of `k` taken through one `Locks` is a different lock
 * from `k` through another (another server, prefix or client), so it is never re-entered from there.
 */
function holdKey(locks: Locks, key: string): string {
  let id = factoryIds.get(locks)
  if (id === undefined) {
    id = ++lastFactoryId
    factoryIds.set(locks, id)
  }
  return id + '\0' + key
}

export interface ReentrantAcquireOptions extends AcquireOptions {
  /** Re-enter holds of this owner instead of the async context's. */
  owner?: LockOwner
}

/** One level of a reentrant hold. Release each level once; the lease goes when the count reaches 0. */
export class ReentrantHandle implements AsyncDisposable {
  readonly #hold: Hold
  #released = false

  /** @internal */
  constructor(hold: Hold) {
    this.#hold = hold
  }

  get key(): string {
    return this.#hold.base.key
  }
  get locked(): boolean {
    return this.#hold.base.locked
  }
  get fencingToken(): bigint {
    return this.#hold.base.fencingToken
  }
  get signal(): AbortSignal {
    return this.#hold.base.signal
  }
  get isHeld(): boolean {
    return !this.#released && this.#hold.base.isHeld
  }
  get remainingMs(): number {
    return this.#released ? 0 : this.#hold.base.remainingMs
  }
  get lease(): Lease | null {
    return this.#hold.base.lease
  }
  /** How many levels of this hold are open (across all handles sharing the lease). */
  get holdCount(): number {
    return this.#hold.count
  }
  onLost(listener: (error: LockLostError) => void): () => void {
    return this.#hold.base.onLost(listener)
  }
  throwIfLost(): void {
    this.#hold.base.throwIfLost()
  }
  extend(ttlMs?: number): Promise<void> {
    if (this.#released) return Promise.reject(new LockNotHeldError(this.key, 'this level was released'))
    return this.#hold.base.extend(ttlMs)
  }

  /** Runs `fn` in a context where this hold is visible, so nested acquisitions re-enter. */
  run<T>(fn: () => T): T {
    const parent = context.getStore()
    const next = new Map(parent)
    next.set(this.#hold.id, this.#hold)
    return context.run(next, fn)
  }

  /** Releases this level (once; later calls resolve false). The lease is released with the last level. */
  async release(): Promise<boolean> {
    if (!this.#releaseLevel()) return !this.#wasReleased
    return this.#hold.base.release()
  }

  /** `await using`: releases this level; release errors become `renewal-error` events. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#releaseLevel()) await this.#hold.base[Symbol.asyncDispose]()
  }

  #wasReleased = false

  /** Closes this level; true when it was the last one (the lease must go). */
  #releaseLevel(): boolean {
    if (this.#released) {
      this.#wasReleased = true
      return false
    }
    this.#released = true
    const hold = this.#hold
    hold.count--
    if (hold.count > 0) return false
    if (hold.owner && hold.owner.holds.get(hold.id) === hold) hold.owner.holds.delete(hold.id)
    return true
  }
}

export class ReentrantLock {
  readonly key: string
  readonly #locks: Locks
  readonly #defaults: AcquireOptions
  readonly #id: string

  /** @internal Use `locks.reentrant(key)`. */
  constructor(locks: Locks, key: string, defaults: AcquireOptions) {
    this.#locks = locks
    this.key = key
    this.#defaults = defaults
    this.#id = holdKey(locks, key)
  }

  /**
   * Re-enters when the current async context (or `owner`) already holds the key; otherwise waits
   * like {@link Mutex.acquire}. Re-entering a hold whose lease was lost throws its {@link LockLostError}.
   */
  acquire(options?: ReentrantAcquireOptions): Promise<ReentrantHandle> {
    return this.#acquire(options, false)
  }

  /**
   * Re-enters, or makes one attempt; null when someone else holds it, and null without an attempt
   * while the same `owner` is still acquiring the key: a try never waits, and an attempt of its
   * own could take the lock ahead of that acquisition, which would then wait for its own owner.
   */
  async tryAcquire(options?: ReentrantAcquireOptions): Promise<ReentrantHandle | null> {
    // options are checked even when re-entering: a bad call fails the same way inside a hold and outside
    const o = resolveAcquireOptions(stripOwner(options), this.#defaults, { autoRenew: false, waitMs: 0 })
    const reentered = this.#reenter(options)
    if (reentered) return reentered
    if (options?.owner?.acquiring.has(this.#id)) return null
    const base = await this.#locks.tryOnce(this.key, o)
    return base ? this.#adopt(base, options?.owner) : null
  }

  /** Acquires (or re-enters), runs `fn` inside the hold's context, releases this level in all cases. Renews by default. */
  withLock<T>(fn: (handle: ReentrantHandle) => Promise<T> | T, options?: ReentrantAcquireOptions): Promise<T> {
    return runScoped(this.#locks, () => this.#acquire(options, true), fn, (h, call) => h.run(call))
  }

  /** `autoRenew` is the default when neither the call nor the lock's defaults say (scoped use renews). */
  async #acquire(options: ReentrantAcquireOptions | undefined, autoRenew: boolean): Promise<ReentrantHandle> {
    // options are checked even when re-entering: a bad call fails the same way inside a hold and outside
    const o = resolveAcquireOptions(stripOwner(options), this.#defaults, { autoRenew })
    const owner = options?.owner
    for (;;) {
      const reentered = this.#reenter(options)
      if (reentered) return reentered
      // the same owner is already acquiring this key: wait for that, then re-enter (or try in turn if it failed)
      const first = owner?.acquiring.get(this.#id)
      if (!first) break
      await first.catch(() => {})
    }
    const acquiring = this.#locks.waitFor(this.key, o).then((base) => this.#adopt(base, owner))
    if (owner) {
      owner.acquiring.set(this.#id, acquiring)
      const settled = (): void => {
        if (owner.acquiring.get(this.#id) === acquiring) owner.acquiring.delete(this.#id)
      }
      acquiring.then(settled, settled)
    }
    return acquiring
  }

  inspect(): Promise<LockInfo | null> {
    return this.#locks.inspect(this.key)
  }

  #reenter(options: ReentrantAcquireOptions | undefined): ReentrantHandle | null {
    const owner = options?.owner
    if (owner !== undefined && !(owner instanceof LockOwner)) {
      throw new InvalidArgumentError(`owner must be a LockOwner (locks.createOwner()), got ${describe(owner)}`)
    }
    const hold = owner ? owner.holds.get(this.#id) : context.getStore()?.get(this.#id)
    if (!hold || hold.count <= 0) return null
    if (hold.base.state === 'lost') throw hold.base.lostError as LockLostError
    if (hold.base.state !== 'held') return null
    hold.count++
    return new ReentrantHandle(hold)
  }

  #adopt(base: LockHandle, owner: LockOwner | undefined): ReentrantHandle {
    const hold: Hold = { base, id: this.#id, count: 1, owner: owner ?? null }
    if (owner) owner.holds.set(this.#id, hold)
    return new ReentrantHandle(hold)
  }
}

function stripOwner(o: ReentrantAcquireOptions | undefined): AcquireOptions | undefined {
  // anything but an object goes through as is, for resolveAcquireOptions to reject
  if (!isOptionsObject(o)) return o
  const { owner: _owner, ...rest } = o
  return rest
}
