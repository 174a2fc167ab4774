/**
 * Deletes a server did not hear, tried again in the background: the store's own owner-checked
 * delete, after 50 ms, doubling up to 1 s, until one is heard (whatever it answers) or the
 * lease's item would have expired on the server (ITEM_LINGER_MS past its validity), so that
 * others need not wait out the TTL after a blip. A closed store (ClosedError) does not come
 * back; `close()` stops every retry. Failures stay silent: whoever asked for the delete already
 * had the first error. Timers are unref'd.
 */
import { ClosedError } from '../errors.js'
import type { Clock, Lease } from './lock-store.js'
import { ITEM_LINGER_MS } from './ttl.js'

const RETRY_MIN_MS = 50
const RETRY_MAX_MS = 1000

export class DeleteRetries {
  readonly #clock: Clock
  readonly #timers = new Set<NodeJS.Timeout>()
  #closed = false

  constructor(clock: Clock) {
    this.#clock = clock
  }

  /** `remove` (an owner-checked delete of `lease`) failed with `error`: try it again in the background. */
  start(lease: Lease, remove: () => Promise<unknown>, error?: unknown): void {
    this.#schedule(lease, remove, RETRY_MIN_MS, error)
  }

  close(): void {
    this.#closed = true
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
  }

  #schedule(lease: Lease, remove: () => Promise<unknown>, delayMs: number, error: unknown): void {
    if (this.#closed || error instanceof ClosedError || this.#clock.now() + delayMs >= lease.validUntil + ITEM_LINGER_MS) return
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      if (this.#closed) return
      remove().catch((err: unknown) => this.#schedule(lease, remove, Math.min(delayMs * 2, RETRY_MAX_MS), err))
    }, delayMs)
    timer.unref()
    this.#timers.add(timer)
  }
}
