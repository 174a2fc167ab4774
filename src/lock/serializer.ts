/**
 * The writer serializer (the original library's `zlock`, done right): for clients of an
 * optimistic-concurrency store (a version column, DynamoDB conditions, memcached CAS, ...).
 * Writers of one object take a lock *before* they read and keep it until *after* they commit,
 * and retry a conflict while still holding it, so they queue instead of throwing away each
 * other's work. The store's own version check stays the safety net: when the lock cannot be had
 * (memcached unreachable, wait bound passed, lease lost mid-run) the work still runs
 * optimistically and stays correct. That is counted and reported, never silent; `strict` mode
 * refuses instead.
 */
import { EventEmitter } from 'node:events'
import { InvalidArgumentError, LockTimeoutError, LockUnavailableError, MemcachedLockError } from '../errors.js'
import { describe } from '../protocol/keys.js'
import { sleep } from '../internal/sleep.js'
import type { LockHandle } from './lock-handle.js'
import { checkInt, resolveAcquireOptions, type AcquireOptions } from './lock-options.js'
import type { Locks } from './locks.js'
import { keyedWrapper, type KeyFunction } from './wrap.js'
import { isOptionsObject } from '../internal/objects.js'

/** Options of a {@link Serializer}. Times in milliseconds. */
export interface SerializerOptions {
  /** Recognises the store's conflict error (e.g. `(e) => e instanceof VersionConflict`). Required. */
  isConflict: (error: unknown) => boolean
  /** Attempts of the unit of work per run, the first included, before the conflict is rethrown. @default 10 */
  maxAttempts?: number
  /** First pause before a conflict retry; doubles per retry with full jitter. Under the lock a conflict is rare, so retry fast. @default 1 */
  retryMinDelayMs?: number
  /** Longest pause before a conflict retry. @default 100 */
  retryMaxDelayMs?: number
  /** Longest wait for the lock; past it the work runs unlocked (soft) or fails (strict). @default 10000 */
  waitMs?: number
  /** Lease length; the lease is renewed while the work runs. @default 30000 */
  ttlMs?: number
  /** `soft` (default): run unlocked when the lock cannot be had, counting it. `strict`: throw instead. */
  mode?: 'soft' | 'strict'
  /** Other acquisition options (retry delays, label...). */
  acquire?: Omit<AcquireOptions, 'ttlMs' | 'waitMs' | 'signal' | 'onUnavailable' | 'autoRenew'>
  /**
   * Consecutive runs for one key in this process share one lease instead of releasing and
   * re-acquiring it between them (see {@link SerializerBatchOptions}); `false` releases after
   * every run. @default { maxRuns: 100, maxMs: 250 }
   */
  batch?: SerializerBatchOptions | false
}

/**
 * Batching: while this process holds an object's lock, its next run for the same object takes
 * the lease over (no release, no re-acquire, no hand-over gap): runs queued here behind the
 * holder, and, when others are waiting for the key, a run that starts before the end of the
 * current event-loop turn. A batch ends after `maxRuns` runs or `maxMs` since its lease was
 * taken, then the lock is released and this process lets waiters elsewhere go first, so no
 * writer starves. Runs of one batch share the lease and its fencing token.
 */
export interface SerializerBatchOptions {
  /** Runs per lease, at most. @default 100 */
  maxRuns?: number
  /** Time since the lease was taken after which no new run joins it. @default 250 */
  maxMs?: number
}

/** What the unit of work receives. */
export interface SerializedContext {
  /** The object key. */
  readonly key: string
  /** 1 for the first attempt, 2 for the first retry... */
  readonly attempt: number
  /** Whether this attempt runs under the lock (false: optimistic only, the store's check protects it). */
  readonly locked: boolean
  /** Fencing token of the lock (0n when unlocked): pass it on if the store can check it. */
  readonly fencingToken: bigint
  /** Aborts when the lock is lost mid-run (the work may go on: the store's check still protects it). */
  readonly signal: AbortSignal
}

/** Counters of one serializer since creation (or the last `resetStats`). Times in ms. */
export interface SerializerStats {
  /** Calls of `run` (and wrapped functions) that were not skipped. */
  runs: number
  /** Runs that returned a result. */
  succeeded: number
  /** Runs that threw (conflicts past `maxAttempts` included). */
  failed: number
  /** Conflict errors seen, retried or not. */
  conflicts: number
  /** Attempts after the first (conflict retries). */
  retries: number
  /** Runs that found the lock taken and had to wait. */
  lockWaits: number
  /** Runs that took over the lease of the previous run in this process (see the `batch` option). */
  batchedRuns: number
  /** Runs that went ahead without the lock (store down, wait bound passed), in soft mode. */
  unlockedRuns: number
  /** Runs whose lease was lost while the work ran. */
  lostLocks: number
  /** Total time spent waiting for the lock. */
  waitMs: number
  /** Total time spent in the unit of work (all attempts). */
  workMs: number
}

export interface SerializedWrapOptions<A extends unknown[]> {
  /** The object key of a call, or {@link SKIP_LOCK} to run that call without the serializer. */
  key: KeyFunction<A>
}

const NEVER = new AbortController().signal

/** One lease shared by consecutive runs for a key in this process. */
interface Batch {
  readonly key: string
  /** The shared lease; null while the first run is still acquiring it. */
  handle: LockHandle | null
  /** performance.now() when the lease was taken. */
  startedAt: number
  /** Runs that have had the lease, the current one included. */
  runs: number
  /** A run holds the lease now. */
  busy: boolean
  /** Runs of this process waiting for the lease, oldest first; called with true when handed the lease. */
  readonly queue: ((handed: boolean) => void)[]
  /** The release scheduled for the end of the turn, while a finished run keeps the lease for the next. */
  linger: NodeJS.Immediate | null
}

/**
 * Events: `unlocked` (key, cause) when a run goes ahead without the lock; `conflict` (key,
 * attempt, error) on each conflict; `lost` (key, error) when a lease is lost mid-run.
 */
export class Serializer extends EventEmitter {
  readonly #locks: Locks
  readonly #isConflict: (error: unknown) => boolean
  readonly #maxAttempts: number
  readonly #retryMin: number
  readonly #retryMax: number
  readonly #mode: 'soft' | 'strict'
  readonly #acquire: AcquireOptions
  readonly #waitMs: number
  readonly #batchRuns: number
  readonly #batchMs: number
  readonly #batches = new Map<string, Batch>()
  #stats: SerializerStats = emptyStats()

  /** @internal Use `locks.serializer(options)`. */
  constructor(locks: Locks, options: SerializerOptions) {
    super()
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError(`serializer options must be an object, got ${describe(options)}`)
    }
    if (typeof options.isConflict !== 'function') {
      throw new InvalidArgumentError(`isConflict must be a function that recognises the store's conflict error, got ${describe(options.isConflict)}`)
    }
    this.#locks = locks
    this.#isConflict = options.isConflict
    this.#maxAttempts = checkInt(options.maxAttempts ?? 10, 'maxAttempts', 1, 1000)
    this.#retryMin = checkInt(options.retryMinDelayMs ?? 1, 'retryMinDelayMs', 0, 60_000)
    this.#retryMax = checkInt(options.retryMaxDelayMs ?? 100, 'retryMaxDelayMs', this.#retryMin, 600_000)
    const mode = options.mode ?? 'soft'
    if (mode !== 'soft' && mode !== 'strict') throw new InvalidArgumentError(`mode must be "soft" or "strict", got ${describe(mode)}`)
    this.#mode = mode
    if (options.acquire !== undefined && !isOptionsObject(options.acquire)) {
      throw new InvalidArgumentError(`acquire must be an object of acquire options, got ${describe(options.acquire)}`)
    }
    this.#acquire = {
      ...options.acquire,
      ttlMs: options.ttlMs ?? 30_000,
      waitMs: options.waitMs ?? 10_000,
      autoRenew: true,
      onUnavailable: 'fail',
    }
    this.#waitMs = resolveAcquireOptions(undefined, this.#acquire, { autoRenew: true }).waitMs
    const batch = options.batch === undefined ? {} : options.batch
    if (batch !== false && (typeof batch !== 'object' || batch === null)) {
      throw new InvalidArgumentError(`batch must be false or an object { maxRuns, maxMs }, got ${describe(batch)}`)
    }
    // maxRuns 1 is the same as no batching
    this.#batchRuns = batch === false ? 1 : checkInt(batch.maxRuns ?? 100, 'batch.maxRuns', 1, 100_000)
    this.#batchMs = batch === false ? 0 : checkInt(batch.maxMs ?? 250, 'batch.maxMs', 0, 60_000)
  }

  /** A copy of the counters. */
  stats(): SerializerStats {
    return { ...this.#stats }
  }

  resetStats(): void {
    this.#stats = emptyStats()
  }

  /**
   * Runs `fn` for object `key` under the lock, from before its read until after its commit,
   * retrying conflicts (recognised by `isConflict`) while still holding the lock. Returns
   * `fn`'s result; throws its last error.
   */
  async run<T>(key: string, fn: (ctx: SerializedContext) => Promise<T> | T): Promise<T> {
    if (typeof fn !== 'function') throw new InvalidArgumentError(`fn must be a function, got ${describe(fn)}`)
    const mutex = this.#locks.mutex(key)
    const s = this.#stats
    s.runs++
    const waitStart = performance.now()
    // (the first look is before any await: runs started together must see the batch the first one registers)
    let batch: Batch | null = null
    for (let current = this.#batches.get(key); current && this.#open(current); current = this.#batches.get(key)) {
      batch = await this.#join(current, waitStart)
      // the batch ended before this run's turn: the next one may be forming already (a run queued
      // with this one is acquiring for it), so look again, while the wait bound allows
      if (batch || performance.now() - waitStart >= this.#waitMs) break
    }
    let handle: LockHandle | null = batch?.handle ?? null
    if (!batch) {
      // while this run acquires, runs here for the same key queue behind it instead of competing
      const own = this.#batchRuns > 1 && !this.#batches.has(key) ? newBatch(key) : null
      if (own) this.#batches.set(key, own)
      try {
        handle = await mutex.acquire({ ...this.#acquire, waitMs: Math.max(0, this.#waitMs - Math.ceil(performance.now() - waitStart)) })
        if (handle.waited) s.lockWaits++
        if (this.#batchRuns > 1) {
          batch = own ?? newBatch(key)
          batch.handle = handle
          batch.startedAt = performance.now()
          // a batch still in the map has ended or is ending (its lease is gone: we hold the lock)
          this.#batches.set(key, batch)
        }
      } catch (caught) {
        if (own) void this.#end(own)
        // the whole wait counts, also the part spent queued here behind a batch
        const err = caught instanceof LockTimeoutError ? new LockTimeoutError(key, this.#waitMs, { cause: caught }) : caught
        if (this.#mode === 'strict' || !isLockUnobtainable(err)) {
          s.failed++
          s.waitMs += performance.now() - waitStart
          throw err
        }
        s.unlockedRuns++
        this.#notify('unlocked', key, err)
      }
    }
    s.waitMs += performance.now() - waitStart
    const unlisten = handle?.onLost((error) => {
      s.lostLocks++
      this.#notify('lost', key, error)
    })
    try {
      for (let attempt = 1; ; attempt++) {
        const ctx: SerializedContext = {
          key,
          attempt,
          locked: handle !== null && handle.state === 'held',
          fencingToken: handle?.fencingToken ?? 0n,
          signal: handle ? handle.signal : NEVER,
        }
        const workStart = performance.now()
        try {
          const result = await fn(ctx)
          s.workMs += performance.now() - workStart
          s.succeeded++
          return result
        } catch (err) {
          s.workMs += performance.now() - workStart
          if (!this.#conflict(err)) {
            s.failed++
            throw err
          }
          s.conflicts++
          this.#notify('conflict', key, attempt, err)
          if (attempt >= this.#maxAttempts) {
            s.failed++
            throw err
          }
          s.retries++
          // we keep the lock: the retry cannot lose its place to another writer
          const cap = Math.min(this.#retryMax, this.#retryMin * 2 ** (attempt - 1))
          if (cap > 0) await sleep(Math.random() * cap)
        }
      }
    } finally {
      unlisten?.()
      if (batch) await this.#finished(batch)
      else if (handle) await this.#release(key, handle)
    }
  }

  /**
   * Joins `batch` (open): its lease, once it is this run's turn; null when the batch ended first
   * or the wait bound passed while queued here.
   */
  async #join(batch: Batch, waitStart: number): Promise<Batch | null> {
    if (!batch.busy) {
      // the previous run kept the lease for us
      if (batch.linger) clearImmediate(batch.linger)
      batch.linger = null
      batch.busy = true
      batch.runs++
      this.#stats.batchedRuns++
      return batch
    }
    const left = this.#waitMs - (performance.now() - waitStart)
    const handed = await new Promise<boolean>((resolve) => {
      let timer: NodeJS.Timeout | null = null
      const waiter = (h: boolean): void => {
        if (timer) clearTimeout(timer)
        resolve(h)
      }
      batch.queue.push(waiter)
      // the wait bound holds here too; past it the run goes on to acquire (and times out there)
      timer = setTimeout(() => {
        const i = batch.queue.indexOf(waiter)
        if (i !== -1) batch.queue.splice(i, 1)
        resolve(false)
      }, Math.max(0, left))
    })
    // not handed: the run goes on to acquire, and is counted as a lock wait there if it waits
    if (!handed) return null
    this.#stats.lockWaits++
    this.#stats.batchedRuns++
    return batch
  }

  /** A run of `batch` ended: hand the lease to the next run here, keep it for this turn, or release it. */
  async #finished(batch: Batch): Promise<void> {
    if (!this.#open(batch)) {
      // the batch used up its turn: whoever waits elsewhere goes first, even if no attempt here saw them
      if (batch.runs > 1) this.#locks.yieldAfterLongHold(batch.key)
    } else {
      const next = batch.queue.shift()
      if (next) {
        batch.runs++
        next(true)
        return
      }
      if (this.#locks.recentlyContended(batch.key)) {
        // others wait for this key: a run starting in this turn (a writer's next update) takes the
        // lease over instead of queueing behind them after a release
        batch.busy = false
        batch.linger = setImmediate(() => {
          batch.linger = null
          void this.#end(batch)
        })
        return
      }
    }
    await this.#end(batch)
  }

  /** Ends `batch`: releases its lease; runs queued here go on to acquire the lock themselves. */
  async #end(batch: Batch): Promise<void> {
    if (this.#batches.get(batch.key) === batch) this.#batches.delete(batch.key)
    batch.busy = true
    const queued = batch.queue.splice(0)
    if (batch.handle) await this.#release(batch.key, batch.handle)
    for (const waiter of queued) waiter(false)
  }

  /** `isConflict(err)`; an `isConflict` that throws is taken as "not a conflict", so the run fails with its own error. */
  #conflict(err: unknown): boolean {
    try {
      return Boolean(this.#isConflict(err))
    } catch {
      return false
    }
  }

  /** Emits an event; a listener that throws cannot break the run or its counters (it becomes a process warning). */
  #notify(event: 'unlocked' | 'lost' | 'conflict', ...args: unknown[]): void {
    try {
      this.emit(event, ...args)
    } catch (err) {
      process.emitWarning(`a serializer '${event}' listener threw: ${(err as Error)?.message ?? String(err)}`, { code: 'MEMCACHED_LOCK_LISTENER_ERROR' })
    }
  }

  /** Whether another run may still join `batch` (one still acquiring its lease may be queued behind). */
  #open(batch: Batch): boolean {
    if (batch.handle === null) return true
    return batch.runs < this.#batchRuns && performance.now() - batch.startedAt < this.#batchMs && batch.handle.isHeld
  }

  async #release(key: string, handle: LockHandle): Promise<void> {
    await handle.release().catch((err: unknown) => this.#locks.emit('renewal-error', key, err))
  }

  /** Wraps `fn` so each call runs through {@link run} with the key computed from its arguments (and `this`). */
  wrap<A extends unknown[], R>(fn: (...args: A) => Promise<R> | R, options: SerializedWrapOptions<A>): (...args: A) => Promise<R> {
    if (typeof fn !== 'function') throw new InvalidArgumentError(`fn must be a function, got ${describe(fn)}`)
    if (typeof options?.key !== 'function') {
      throw new InvalidArgumentError(`options.key must be a function returning the object key, got ${describe(options?.key)}`)
    }
    return keyedWrapper(fn, options.key, (key, call) => this.run(key, call))
  }
}

/** Errors after which soft mode runs the work unlocked: the lock could not be had, the store is not at fault for the work. */
function isLockUnobtainable(err: unknown): boolean {
  return err instanceof LockUnavailableError || err instanceof LockTimeoutError || (err instanceof MemcachedLockError && err.code.startsWith('ERR_CONN'))
}

function newBatch(key: string): Batch {
  return { key, handle: null, startedAt: Infinity, runs: 1, busy: true, queue: [], linger: null }
}

function emptyStats(): SerializerStats {
  return { runs: 0, succeeded: 0, failed: 0, conflicts: 0, retries: 0, lockWaits: 0, batchedRuns: 0, unlockedRuns: 0, lostLocks: 0, waitMs: 0, workMs: 0 }
}
