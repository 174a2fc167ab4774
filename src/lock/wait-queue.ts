/**
 * The waiters of one key inside one process: served in FIFO order by a single poller, so a
 * process never floods the server however many of its callers wait. Across processes the head
 * takes a ticket in the store's advisory waiting line: the next in line polls every
 * millisecond, the others sleep until about their turn. Without a line, the poller sleeps with
 * capped exponential backoff and full jitter. Sleeps never outlast the holder's remaining TTL,
 * and end early when a holder in this process releases, or on a push (the store's
 * `waitForRelease`) once a wait is long.
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

/** How long the next waiter in line polls every millisecond before falling back to backoff. */
const NEXT_POLL_WINDOW_MS = 50
/** Waits longer than this also listen for releases pushed by the server (see `waitForRelease`). */
const PUSH_AFTER_MS = 100

export class WaitQueue {
  readonly #key: string
  readonly #store: LockStore
  readonly #onIdle: () => void
  readonly #hooks: QueueHooks
  #waiters: Waiter[] = []
  #pumping = false
  /** The poller's latest run (resolved once it stopped). */
  #pumped: Promise<void> | null = null
  #localWake: AbortController | null = null
  /** Until then (store clock) this process lets remote waiters take the key first. */
  #yieldUntil = 0
  /** Last time (store clock) an attempt here found the key taken. */
  #lastContendedAt = -Infinity
  /** The waiting line's served counter as last seen, when it changed, and how fast it moves (ms per ticket; 0: unknown). */
  #lastServing = -1
  #lastServedAt = -Infinity
  #servedEvery = 0

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
    // a shorter yield (a plain hand-over) never cuts a longer one short (the one after a long hold)
    const until = this.#store.clock.now() + ms
    if (until <= this.#yieldUntil) return
    this.#yieldUntil = until
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
      const timer = setTimeout(() => this.#timeOut(w), opts.waitMs)
      const onAbort = (): void => this.#finish(w, new LockAbortedError(this.#key, { cause: opts.signal?.reason }))
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      w.cleanup = () => {
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
      }
      this.#waiters.push(w)
      if (!this.#pumping) this.#pumped = this.#pump()
    })
  }

  /** Ends every wait with `error` (the factory is closing); {@link settled} tells when the poller has stopped. */
  closeAll(error: Error): void {
    for (const w of this.#waiters) this.#finish(w, error)
    this.#localWake?.abort()
  }

  /** Resolves once the poller is not running (its last attempt, and any lease it handed back, done). */
  settled(): Promise<void> {
    return this.#pumped ?? Promise.resolve()
  }

  /** A holder of this key in this process released or lost it: the next waiter may try at once. */
  holderEnded(): void {
    this.#localWake?.abort()
    if (this.idle) this.#onIdle()
  }

  #timeOut(w: Waiter): void {
    this.#finish(w, new LockTimeoutError(this.#key, w.opts.waitMs))
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
    /** The head's ticket in the cross-process waiting line (advisory; NaN when it has none). */
    let ticket = NaN
    let joined = false
    /** Whether the head was next in line at its last attempt: next polls, the others sleep until about their turn. */
    let next = false
    /** When the head became next in line (store clock), for the bounded polling window. */
    let nextSince = NaN
    /** When the head started waiting in this queue: push wake-ups only for long waits. */
    let since = NaN
    /** A head that leaves while next in line (timed out, aborted) hands the turn on. */
    const passTurn = (): void => {
      if (next && !Number.isNaN(ticket)) this.#served(ticket)
      next = false
    }
    try {
      while ((head = this.#waiters[0]) !== undefined) {
        if (head.done) {
          this.#waiters.shift()
          continue
        }
        if (head !== current) {
          passTurn()
          current = head
          attempt = 0
          ticket = NaN
          joined = false
          nextSince = NaN
          since = this.#store.clock.now()
        }
        const o = head.opts
        if (this.#hooks.holders() > 0) {
          // someone here holds it: wait for their release (a local wake) rather than ask the server
          await this.#sleep(head, o.retryMaxDelayMs, false)
          continue
        }
        const yieldMs = this.#yieldUntil - this.#store.clock.now()
        if (yieldMs > 0) {
          await sleep(yieldMs, head.wake.signal)
          continue
        }
        // the first attempt from the queue also takes a ticket (same write): FIFO across processes
        const entering = !joined && this.#store.enterQueue ? this.#store.enterQueue(this.#key).catch(() => NaN) : null
        joined = true
        let result
        try {
          result = await this.#store.create(this.#key, o.ttlMs, head.owner, {
            wantRemaining: !next,
            wantServing: !next && (entering !== null || !Number.isNaN(ticket)),
          })
        } catch (error) {
          this.#finish(head, { error })
          continue
        } finally {
          if (entering) ticket = await entering
        }
        if (result.acquired) {
          const lease = result.lease
          if (head.done || lease.validUntil <= this.#store.clock.now()) {
            // nobody to give it to (timed out meanwhile), or already spent: hand it back
            await this.#store.delete(lease).catch(() => {})
            continue
          }
          // served: the line moves on (and there is no turn left to pass on)
          if (!Number.isNaN(ticket)) this.#served(ticket)
          next = false
          this.#hooks.granted()
          this.#finish(head, { lease })
          continue
        }
        attempt++
        const now = this.#store.clock.now()
        this.#lastContendedAt = now
        const serving = Number.isNaN(ticket) ? undefined : result.serving
        if (serving !== undefined) {
          this.#observeServing(serving, now)
          const isNext = ticket <= serving + 1
          if (isNext && !next) nextSince = now
          next = isNext
        }
        if (now >= head.deadline) {
          // its time is up: end it here rather than loop until its timer gets a turn (with a store
          // that answers without I/O, such as the memory store, that loop would never yield to it)
          this.#timeOut(head)
          continue
        }
        let delay: number
        if (next && now - nextSince < NEXT_POLL_WINDOW_MS) {
          // next in line: poll every millisecond for a while, so a short hold is handed over within
          // about a millisecond, without spinning (a spinning waiter takes CPU from the holder)
          delay = 1
        } else if (serving !== undefined && !next && this.#servedEvery > 0) {
          // behind others: sleep until about our turn, judged by how fast the line has been moving
          delay = Math.max(1, (ticket - (serving + 1)) * this.#servedEvery * 0.8)
        } else {
          const cap = Math.min(o.retryMaxDelayMs, o.retryMinDelayMs * 2 ** Math.min(attempt, 20))
          delay = Math.max(1, Math.random() * cap)
        }
        delay = Math.min(delay, o.retryMaxDelayMs)
        // the holder's lease cannot outlive its TTL: no point sleeping past it
        if (result.remainingMs !== undefined) delay = Math.min(delay, result.remainingMs + 1)
        delay = Math.min(delay, head.deadline - now)
        // with a waiting line, push wake-ups (a wake-up per store on the server for every watching
        // process) are worth it only for long waits, where polling would be slow
        const push = !this.#store.enterQueue || now - since >= PUSH_AFTER_MS
        // a sleep without them ends where they begin: a backoff drawn before (up to retryMaxDelayMs)
        // would otherwise sleep through releases that the push would have reported
        if (!push) delay = Math.max(1, Math.min(delay, since + PUSH_AFTER_MS - now))
        await this.#sleep(head, delay, push)
      }
    } finally {
      passTurn()
      this.#pumping = false
      if (this.idle) this.#onIdle()
    }
  }

  /**
   * Moves the line's served counter to `ticket`, never back: a waiter served out of turn after a
   * later ticket must not make the waiters behind it count their places from too far back.
   */
  #served(ticket: number): void {
    if (ticket > this.#lastServing) this.#store.markServed?.(this.#key, ticket)
  }

  /** Learns how fast the waiting line moves (ms per served ticket, smoothed) from the served counter. */
  #observeServing(serving: number, now: number): void {
    if (serving > this.#lastServing && Number.isFinite(this.#lastServedAt)) {
      const sample = (now - this.#lastServedAt) / (serving - this.#lastServing)
      this.#servedEvery = this.#servedEvery > 0 ? this.#servedEvery * 0.7 + sample * 0.3 : sample
    }
    if (serving !== this.#lastServing) {
      this.#lastServing = serving
      this.#lastServedAt = now
    }
  }

  /**
   * Sleeps up to `ms`; wakes early on a local release, the head's timeout/abort, or (with
   * `push`) a release pushed by the store.
   */
  async #sleep(head: Waiter, ms: number, push: boolean): Promise<void> {
    const local = new AbortController()
    this.#localWake = local
    const signal = AbortSignal.any([head.wake.signal, local.signal])
    try {
      if (push && this.#store.waitForRelease && this.#hooks.holders() === 0) await this.#store.waitForRelease(this.#key, ms, signal)
      else await sleep(ms, signal)
    } finally {
      if (this.#localWake === local) this.#localWake = null
    }
  }
}
