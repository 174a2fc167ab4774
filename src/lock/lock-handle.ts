/**
 * A held lock: the lifecycle shared by every lock kind. It owns the lease, renews it when asked
 * to, watches for its loss (renewal refused or failing, validity running out, the server
 * disconnecting or restarting) and reports a loss exactly once: `signal` aborts with a
 * {@link LockLostError}, `onLost` listeners run, the factory emits `lost`. Nothing here can
 * raise an unhandled rejection: background work catches everything and turns it into a loss.
 */
import { LockLostError, LockNotHeldError, type LockLostReason } from '../errors.js'
import type { Lease, LockStore } from '../store/lock-store.js'
import type { TimerWheel, WheelJob } from './timer-wheel.js'

/** What a handle tells its owner (the lock factory) about its life. */
export interface HandleHooks {
  /** Called as the release is sent; may start a probe for waiters, sent in the same batch. */
  onReleasing?(handle: LockHandle): Promise<boolean> | null
  /** `contended`: the probe's answer (false when there was none). */
  onReleased(handle: LockHandle, deleted: boolean, contended?: boolean): void
  /** The server did not hear the release of `lease` (the error is thrown to the caller too). */
  onReleaseFailed?(handle: LockHandle, lease: Lease): void
  onLost(handle: LockHandle, error: LockLostError): void
  onRenewalError(handle: LockHandle, error: unknown): void
}

export interface HandleConfig {
  readonly ttlMs: number
  readonly autoRenew: boolean
  readonly renewAt: number
  /** Shared timers of the factory (on the store's clock). */
  readonly wheel: TimerWheel
}

type HandleState = 'held' | 'released' | 'lost'

export class LockHandle implements AsyncDisposable {
  /** The lock's name. */
  readonly key: string
  /**
   * False only when the lock's `onUnavailable` policy is `proceed` and the store could not be
   * reached: the code runs without mutual exclusion. Always true otherwise.
   */
  readonly locked: boolean

  /** True when the lock was taken only after waiting (another holder had it at first). */
  readonly waited: boolean
  /** @internal Store-clock time the acquisition started: contention seen since then means others wait. */
  readonly requestedAt: number

  readonly #store: LockStore | null
  readonly #hooks: HandleHooks
  readonly #config: HandleConfig
  /** Created on first use: AbortControllers are costly and most handles never need one. */
  #ac: AbortController | null = null
  #lostError: LockLostError | null = null
  #lease: Lease | null
  #state: HandleState = 'held'
  #op: Promise<unknown> = Promise.resolve()
  /** Operations chained on `#op` and not yet settled. */
  #pending = 0
  readonly #renewJob: WheelJob = { bucket: NaN, run: () => this.#renew() }
  readonly #expiryJob: WheelJob = { bucket: NaN, run: () => this.#onExpiry() }
  #exactTimer: NodeJS.Timeout | null = null
  #unwatch: (() => void) | null = null
  #lastRenewalError: unknown = undefined
  #lostListeners: ((error: LockLostError) => void)[] = []

  /** @internal Created by the lock factory. */
  constructor(
    key: string,
    lease: Lease | null,
    store: LockStore | null,
    config: HandleConfig,
    hooks: HandleHooks,
    acquisition: { waited: boolean; requestedAt: number } = { waited: false, requestedAt: 0 },
  ) {
    this.key = key
    this.waited = acquisition.waited
    this.requestedAt = acquisition.requestedAt
    this.locked = lease !== null
    this.#lease = lease
    this.#store = store
    this.#config = config
    this.#hooks = hooks
    if (lease && store) {
      this.#unwatch = store.watchLease(lease, (reason, cause) => this.#lose(reason, cause))
      this.#schedule()
    }
  }

  /**
   * Fencing token: strictly increases per key across successive holders (memcached: boot epoch
   * and acquire CAS). Pass it to the resource you protect and have it reject lower tokens.
   * `0n` when `locked` is false.
   */
  get fencingToken(): bigint {
    return this.#lease?.fence ?? 0n
  }

  /** Aborts, with a {@link LockLostError} as `reason`, when the lease is lost. Never aborts after release. */
  get signal(): AbortSignal {
    if (!this.#ac) {
      this.#ac = new AbortController()
      if (this.#lostError) this.#ac.abort(this.#lostError)
    }
    return this.#ac.signal
  }

  /** The loss, once the lease was lost; null otherwise. */
  get lostError(): LockLostError | null {
    return this.#lostError
  }

  /** True while the lease is held and, by this client's conservative clock, still valid (false for an unlocked handle). */
  get isHeld(): boolean {
    // an unlocked handle (onUnavailable: 'proceed') holds nothing
    if (this.#state !== 'held' || !this.#lease || !this.#store) return false
    return this.#store.clock.now() < this.#lease.validUntil
  }

  /** Milliseconds the lease is certainly still valid for (0 when released or lost). */
  get remainingMs(): number {
    if (this.#state !== 'held' || !this.#lease || !this.#store) return 0
    return Math.max(0, this.#lease.validUntil - this.#store.clock.now())
  }

  /** The current lease (changes on every extension), or null when unlocked. */
  get lease(): Lease | null {
    return this.#lease
  }

  /** `held`, `released` or `lost`. */
  get state(): HandleState {
    return this.#state
  }

  /** Runs `listener` once if the lease is lost (at once if it already was). Returns an unsubscribe function. */
  onLost(listener: (error: LockLostError) => void): () => void {
    if (this.#state === 'lost') {
      queueMicrotask(() => listener(this.#lostError as LockLostError))
      return () => {}
    }
    this.#lostListeners.push(listener)
    return () => {
      this.#lostListeners = this.#lostListeners.filter((l) => l !== listener)
    }
  }

  /** Throws the {@link LockLostError} if the lease was lost; a cheap check inside long work. */
  throwIfLost(): void {
    if (this.#state === 'lost') throw this.#lostError as LockLostError
  }

  /**
   * Extends the lease to `ttlMs` from now (default: the TTL it was acquired with).
   * Throws {@link LockLostError} when the lease turned out to be gone (and marks it lost),
   * {@link LockNotHeldError} after release, or the store's error when it could not be reached
   * (the lease stays held until its validity runs out).
   */
  extend(ttlMs?: number): Promise<void> {
    return this.#chain(() => this.#extend(ttlMs ?? this.#config.ttlMs))
  }

  /**
   * Releases the lock. Resolves true when our lease was deleted, false when it was no longer
   * ours (it had expired or been lost: then the loss is signalled too) or was already released.
   * Rejects with the store's error when the server could not be reached; the factory then keeps
   * trying in the background, until the server hears it or the lease ends by its TTL. Never
   * deletes another owner's lock.
   */
  release(): Promise<boolean> {
    if (this.#state === 'released') return Promise.resolve(false)
    if (!this.locked) {
      this.#state = 'released'
      this.#hooks.onReleased(this, false)
      return Promise.resolve(false)
    }
    const wasLost = this.#state === 'lost'
    this.#state = 'released'
    this.#stopTimers()
    // nothing in flight (the usual case): delete at once
    if (this.#pending === 0) return this.#delete(wasLost)
    // wait for an extension in flight: it changes the CAS the delete must compare against
    return this.#chain(() => this.#delete(wasLost))
  }

  /** `await using handle = await lock.acquire()`: releases at the end of the scope; release errors are reported as events, not thrown. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.release()
    } catch (err) {
      this.#hooks.onRenewalError(this, err)
    }
  }

  async #delete(wasLost: boolean): Promise<boolean> {
    const lease = this.#lease as Lease
    let deleted = false
    let contended = false
    try {
      const probe = wasLost ? null : (this.#hooks.onReleasing?.(this) ?? null)
      if (probe) [deleted, contended] = await Promise.all([(this.#store as LockStore).delete(lease), probe.catch(() => false)])
      else deleted = await (this.#store as LockStore).delete(lease)
    } catch (err) {
      // the server could not be told; this handle is done either way, and the factory keeps
      // trying (owner-checked) until the lease would have ended by its TTL
      this.#hooks.onReleased(this, false, false)
      this.#hooks.onReleaseFailed?.(this, lease)
      throw err
    } finally {
      this.#unwatch?.()
      this.#unwatch = null
    }
    // it was gone before we released: the holder must hear of it
    if (!deleted && !wasLost) this.#announce('taken')
    this.#hooks.onReleased(this, deleted, contended)
    return deleted
  }

  #chain<T>(fn: () => Promise<T>): Promise<T> {
    this.#pending++
    const p = this.#op.then(fn, fn)
    const settled = (): void => {
      this.#pending--
    }
    this.#op = p.then(settled, settled)
    return p
  }

  async #extend(ttlMs: number): Promise<void> {
    if (this.#state === 'released') throw new LockNotHeldError(this.key, 'it was released')
    if (this.#state === 'lost') throw this.#lostError as LockLostError
    if (!this.#lease || !this.#store) return
    if (this.#store.clock.now() >= this.#lease.validUntil) {
      this.#lose('expired')
      throw this.#lostError as LockLostError
    }
    const next = await this.#store.extend(this.#lease, ttlMs)
    if ((this.#state as HandleState) !== 'held') {
      // released or lost while this extension was in flight: the delete queued behind it must
      // compare against the CAS the extension just set, or it misses and leaves the lock held
      if (next !== null) this.#lease = next
      if ((this.#state as HandleState) === 'lost') throw this.#lostError as LockLostError
      return
    }
    if (next === null) {
      this.#lose('taken')
      throw this.#lostError as LockLostError
    }
    this.#lease = next
    this.#lastRenewalError = undefined
    this.#schedule(ttlMs)
  }

  #schedule(ttlMs = this.#config.ttlMs): void {
    this.#stopTimers()
    const lease = this.#lease as Lease
    const now = (this.#store as LockStore).clock.now()
    const remaining = lease.validUntil - now
    this.#config.wheel.schedule(this.#expiryJob, lease.validUntil)
    if (this.#config.autoRenew) {
      const delay = Math.min(ttlMs * this.#config.renewAt, remaining / 2)
      this.#config.wheel.schedule(this.#renewJob, now + Math.max(0, delay))
    }
  }

  #armRenewal(delay: number): void {
    this.#config.wheel.schedule(this.#renewJob, (this.#store as LockStore).clock.now() + delay)
  }

  #renew(): void {
    if (this.#state !== 'held') return
    this.extend().catch((err: unknown) => {
      if (this.#state !== 'held') return
      // a backend failure: try again while the lease is still valid; the expiry check declares the loss
      this.#lastRenewalError = err
      this.#hooks.onRenewalError(this, err)
      const remaining = this.remainingMs
      if (remaining > 0) this.#armRenewal(Math.min(1000, Math.max(10, remaining / 4)))
    })
  }

  #onExpiry(): void {
    this.#exactTimer = null
    if (this.#state !== 'held') return
    const remaining = this.remainingMs
    if (remaining > 0) {
      // the wheel fires up to a tick early: wait out the rest exactly
      this.#exactTimer = setTimeout(() => this.#onExpiry(), remaining + 1)
      this.#exactTimer.unref()
      return
    }
    this.#lose(this.#lastRenewalError === undefined ? 'expired' : 'renewal-failed', this.#lastRenewalError)
  }

  #stopTimers(): void {
    this.#config.wheel.cancel(this.#renewJob)
    this.#config.wheel.cancel(this.#expiryJob)
    if (this.#exactTimer) clearTimeout(this.#exactTimer)
    this.#exactTimer = null
  }

  /** @internal Marks the lease lost (once), tells everyone, and removes what is left of it on the server. */
  lose(reason: LockLostReason, cause?: unknown): void {
    this.#lose(reason, cause)
  }

  #lose(reason: LockLostReason, cause?: unknown): void {
    if (this.#state !== 'held' || !this.locked) return
    this.#state = 'lost'
    this.#stopTimers()
    this.#unwatch?.()
    this.#unwatch = null
    this.#announce(reason, cause)
    if (reason !== 'taken' && this.#lease && this.#store) {
      // our item may still be on the server (e.g. after a blip): remove it, owner-checked, so others need not wait for its TTL;
      // the lease is read when the delete runs, after any extension in flight has updated it
      const store = this.#store
      this.#chain(() => store.delete(this.#lease as Lease)).catch(() => {})
    }
  }

  #announce(reason: LockLostReason, cause?: unknown): void {
    const error = new LockLostError(this.key, reason, cause === undefined ? undefined : { cause })
    this.#lostError = error
    this.#ac?.abort(error)
    for (const l of this.#lostListeners.splice(0)) {
      try {
        l(error)
      } catch {
        // one listener's failure must not hide the loss from the others
      }
    }
    this.#hooks.onLost(this, error)
  }
}
