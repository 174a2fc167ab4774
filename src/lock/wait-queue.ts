/**
 * The waiters of one key inside one process: served in FIFO order by a single poller, so a
 * process never floods the server however many of its callers wait. Between attempts the
 * poller sleeps with capped exponential backoff and full jitter, never longer than the
 * holder's remaining TTL, and wakes early on a push (the store's `waitForRelease`) or when a
 * holder in this process releases.
 */
import { LockAbortedError, LockTimeoutError } from '../errors.js'
import { sleep } from '../internal/sleep.js'
import type { Lease, LockStore, OwnerInfo } from '../store/lock-store.js'
import type { ResolvedAcquireOptions } from './lock-options.js'

/** How one wait ended. `error` is a store failure (the caller applies its unavailability policy). */
export type WaitOutcome = { lease: Lease } | { error: unknown }

interface Waiter {
  readonly opts: ResolvedAcquireOptions
  readonly owner: OwnerInfo
  readonly deadline: number
  /** Aborted when this waiter times out or its caller's signal aborts: wakes the poller. */
  readonly wake: AbortController
  readonly resolve: (outcome: WaitOutcome) => void
  readonly reject: (err: Error) => void
  done: boolean
  cleanup: () => void
}

/** What a queue asks of its owner: the number of holders of the key in this process. */
export interface QueueHooks {
  /** Holders of the key in this process: while any holds it, asking the server is pointless. */
  holders(): number
  /** The queue granted a lease to one of its waiters (a new local holder). */
  granted(): void
  /** The queue has nothing left to do and may be dropped. */
  idle(): void
}

/** How long the next waiter in line polls back to back before falling back to sleeps and push wake-ups. */
const EAGER_POLL_MS = 50
/** A waiter behind others in line, woken by a release, waits this long so the one ahead (polling) takes it. */
const HANDOFF_GRACE_MS = 2

export class WaitQueue {
  readonly #key: string
  readonly #store: LockStore
  readonly #onIdle: () => void
  readonly #hooks: QueueHooks
  #waiters: Waiter[] = []
  #pumping = false
  #localWake: AbortController | null = null
  /** Until then (store clock) this process lets remote waiters take the key first. */
  #yieldUntil = 0
  /** Last time (store clock) an attempt here found the key taken. */
  #lastContendedAt = -Infinity

  constructor(key: string, store: LockStore, hooks: QueueHooks) {
    this.#key = key
    this.#store = store
    this.#hooks = hooks
    this.#onIdle = hooks.idle
  }

  get idle(): boolean {
    return this.#waiters.length === 0 && this.#hooks.holders() === 0 && !this.#pumping && this.#store.clock.now() >= this.#yieldUntil
  }

  /** Whether an attempt in this process found the key taken within the last `ms`. */
  contendedWithin(ms: number): boolean {
    return this.#store.clock.now() - this.#lastContendedAt <= ms
  }

  /** True while this process yields the key to remote waiters (see {@link yieldFor}). */
  get yielding(): boolean {
    return this.#store.clock.now() < this.#yieldUntil
  }

  /**
   * Fair hand-over: after releasing a key others were waiting for, this process does not try
   * to take it again for `ms`, so a remote waiter woken by the release gets it first.
   */
  yieldFor(ms: number): void {
    this.#yieldUntil = this.#store.clock.now() + ms
    setTimeout(() => {
      if (this.idle) this.#onIdle()
    }, ms + 1).unref()
  }

  /** Waits for the lock; resolves with a lease or a store failure, rejects with timeout/abort errors. */
  wait(opts: ResolvedAcquireOptions, owner: OwnerInfo): Promise<WaitOutcome> {
    return new Promise<WaitOutcome>((resolve, reject) => {
      const w: Waiter = {
        opts,
        owner,
        deadline: this.#store.clock.now() + opts.waitMs,
        wake: new AbortController(),
        resolve,
        reject,
        done: false,
        cleanup: () => {},
      }
      const timer = setTimeout(() => this.#finish(w, new LockTimeoutError(this.#key, opts.waitMs)), opts.waitMs)
      const onAbort = (): void => this.#finish(w, new LockAbortedError(this.#key, { cause: opts.signal?.reason }))
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      w.cleanup = () => {
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
      }
      this.#waiters.push(w)
      if (!this.#pumping) void this.#pump()
    })
  }

  /** A holder of this key in this process released or lost it: the next waiter may try at once. */
  holderEnded(): void {
    this.#localWake?.abort()
    if (this.idle) this.#onIdle()
  }

  #finish(w: Waiter, result: Error | WaitOutcome): void {
    if (w.done) return
    w.done = true
    w.cleanup()
    w.wake.abort()
    if (result instanceof Error) w.reject(result)
    else w.resolve(result)
  }

  async #pump(): Promise<void> {
    this.#pumping = true
    let attempt = 0
    let head: Waiter | undefined
    let current: Waiter | undefined
    /** The head's ticket in the cross-process waiting line (advisory; NaN when the store has none). */
    let ticket = NaN
    /** When the head learned it is next in line (store clock), for the bounded eager-polling window. */
    let nextSince = NaN
    try {
      while ((head = this.#waiters[0]) !== undefined) {
        if (head.done) {
          this.#waiters.shift()
          continue
        }
        if (head !== current) {
          current = head
          attempt = 0
          ticket = NaN
          nextSince = NaN
        }
        const o = head.opts
        if (this.#hooks.holders() > 0) {
          // someone here holds it: wait for their release (a local wake) rather than ask the server
          await this.#sleep(head, o.retryMaxDelayMs)
          continue
        }
        const yieldMs = this.#yieldUntil - this.#store.clock.now()
        if (yieldMs > 0) {
          await sleep(yieldMs, head.wake.signal)
          continue
        }
        let result
        try {
          result = await this.#store.create(this.#key, o.ttlMs, head.owner, { wantRemaining: true, wantServing: !Number.isNaN(ticket) })
        } catch (error) {
          this.#finish(head, { error })
          continue
        }
        if (result.acquired) {
          const lease = result.lease
          if (head.done || lease.validUntil <= this.#store.clock.now()) {
            // nobody to give it to (timed out meanwhile), or already spent: hand it back
            this.#store.delete(lease).catch(() => {})
            continue
          }
          if (!Number.isNaN(ticket)) this.#store.markServed?.(this.#key, ticket)
          this.#hooks.granted()
          this.#finish(head, { lease })
          continue
        }
        attempt++
        this.#lastContendedAt = this.#store.clock.now()
        if (Number.isNaN(ticket) && this.#store.enterQueue) {
          ticket = await this.#store.enterQueue(this.#key).catch(() => NaN)
        }
        const now = this.#store.clock.now()
        if (result.serving !== undefined && ticket <= result.serving + 1) {
          // next in line: poll back to back for a bounded while, so the hand-over takes about one round trip
          if (Number.isNaN(nextSince)) nextSince = now
          if (now - nextSince < EAGER_POLL_MS) {
            await new Promise<void>((resolve) => setImmediate(resolve))
            continue
          }
        }
        const cap = Math.min(o.retryMaxDelayMs, o.retryMinDelayMs * 2 ** Math.min(attempt, 20))
        let delay = Math.max(1, Math.random() * cap)
        // the holder's lease cannot outlive its TTL: no point sleeping past it
        if (result.remainingMs !== undefined) delay = Math.min(delay, result.remainingMs + 1)
        delay = Math.min(delay, head.deadline - now)
        if (delay > 0) {
          const behind = result.serving !== undefined && ticket > result.serving + 1
          const woke = await this.#sleep(head, delay)
          // someone is ahead of us in line and polls for this release: let them have it first
          if (woke && behind) await sleep(HANDOFF_GRACE_MS, head.wake.signal)
        }
      }
    } finally {
      this.#pumping = false
      if (this.idle) this.#onIdle()
    }
  }

  /** Sleeps up to `ms`; wakes early on a push from the store, a local release, or the head's timeout/abort. True when woken early. */
  async #sleep(head: Waiter, ms: number): Promise<boolean> {
    const local = new AbortController()
    this.#localWake = local
    const signal = AbortSignal.any([head.wake.signal, local.signal])
    const started = this.#store.clock.now()
    try {
      if (this.#store.waitForRelease && this.#hooks.holders() === 0) await this.#store.waitForRelease(this.#key, ms, signal)
      else await sleep(ms, signal)
    } finally {
      if (this.#localWake === local) this.#localWake = null
    }
    return this.#store.clock.now() - started < ms - 1
  }
}
