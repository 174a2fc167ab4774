/**
 * Callers waiting for a key to be released, each until a wake-up, its timeout or its signal,
 * whichever comes first. Shared by the memory store (woken by its own deletes) and the release
 * watcher (woken by the `watch` stream).
 */
export class WakeList {
  readonly #waiters = new Map<string, Set<() => void>>()
  readonly #onEmpty: () => void

  /** `onEmpty` runs whenever the last waiter of the last key leaves. */
  constructor(onEmpty: () => void = () => {}) {
    this.#onEmpty = onEmpty
  }

  /** Number of keys with waiters. */
  get size(): number {
    return this.#waiters.size
  }

  /** Resolves on {@link wake} of `key`, after `timeoutMs`, or when `signal` aborts. Never rejects. */
  wait(key: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(key)
      if (!set) {
        set = new Set()
        this.#waiters.set(key, set)
      }
      const s = set
      const done = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        s.delete(done)
        if (s.size === 0 && this.#waiters.get(key) === s) this.#waiters.delete(key)
        if (this.#waiters.size === 0) this.#onEmpty()
        resolve()
      }
      // a caller awaits this: the timer keeps the process alive
      const timer = setTimeout(done, Math.max(0, timeoutMs))
      signal?.addEventListener('abort', done, { once: true })
      s.add(done)
    })
  }

  wake(key: string): void {
    const set = this.#waiters.get(key)
    if (set) for (const done of [...set]) done()
  }

  wakeAll(): void {
    for (const set of [...this.#waiters.values()]) for (const done of [...set]) done()
  }
}
