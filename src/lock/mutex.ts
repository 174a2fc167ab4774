import type { LockInfo } from '../store/lock-store.js'
import type { LockHandle } from './lock-handle.js'
import { resolveAcquireOptions, type AcquireOptions, type ResolvedAcquireOptions } from './lock-options.js'
import type { Locks } from './locks.js'
import { runScoped } from './scoped.js'

/**
 * A primitive lock on one key. Not reentrant: acquiring it again while holding it waits like
 * any other caller (and times out), unlike the original library's silent no-op.
 */
export class Mutex {
  readonly key: string
  readonly #locks: Locks
  readonly #defaults: AcquireOptions
  /** `acquire()` without options, resolved once (it is the hot path). */
  #plainAcquire: ResolvedAcquireOptions | undefined

  /** @internal Use `locks.mutex(key)`. */
  constructor(locks: Locks, key: string, defaults: AcquireOptions) {
    this.#locks = locks
    this.key = key
    this.#defaults = defaults
  }

  /**
   * Waits up to `waitMs` (default 10000) for the lock. Throws {@link LockTimeoutError} when it
   * stays taken, {@link LockAbortedError} when `signal` aborts, {@link LockUnavailableError}
   * when the store fails (unless `onUnavailable: "proceed"`).
   */
  async acquire(options?: AcquireOptions): Promise<LockHandle> {
    return this.#locks.waitFor(this.key, options === undefined ? (this.#plainAcquire ??= resolveAcquireOptions(undefined, this.#defaults, { autoRenew: false })) : resolveAcquireOptions(options, this.#defaults, { autoRenew: false }))
  }

  /**
   * One attempt: the handle, or null when someone else holds the lock. Throws when the store
   * fails, or {@link LockAbortedError} (without trying) when `signal` is already aborted.
   */
  async tryAcquire(options?: AcquireOptions): Promise<LockHandle | null> {
    return this.#locks.tryOnce(this.key, resolveAcquireOptions(options, this.#defaults, { autoRenew: false, waitMs: 0 }))
  }

  /** Acquires, runs `fn(handle)`, releases in all cases. Renews while `fn` runs unless `autoRenew: false`. */
  async withLock<T>(fn: (handle: LockHandle) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    const o = resolveAcquireOptions(options, this.#defaults, { autoRenew: true })
    return runScoped(this.#locks, () => this.#locks.waitFor(this.key, o), fn)
  }

  /** Who holds this lock now, or null. */
  async inspect(): Promise<LockInfo | null> {
    return this.#locks.inspect(this.key)
  }
}
