/**
 * The store contract: the few verbs a lock needs. A store answers "held by someone else" as a
 * normal result and throws only when its backend fails (with a typed error). Lock kinds see
 * nothing but this interface, so the memory store is a real implementation held to the same
 * contract suite as the memcached store, not a mock.
 */

/** A monotonic clock in milliseconds (never wall time). */
export interface Clock {
  now(): number
}

/** The system's monotonic clock (`performance.now()`). */
export const monotonicClock: Clock = { now: () => performance.now() }

/** Who holds a lock, stored next to the token so operators can tell (`memcached-lock status`). */
export interface OwnerInfo {
  /** Host name of the holder. */
  readonly host?: string
  /** Process id of the holder. */
  readonly pid?: number
  /** Wall-clock time of acquisition, ms since the Unix epoch (for display only, never for validity). */
  readonly since?: number
  /** Free-form label chosen by the application. */
  readonly label?: string
}

/** A lease granted by a store. Treat as opaque beyond the documented fields. */
export interface Lease {
  /** The lock name (without prefix). */
  readonly key: string
  /** The owner token: 128 random bits, hex. */
  readonly token: string
  /** Fencing token: strictly increases per key across successive owners (see README, "fencing"). */
  readonly fence: bigint
  /** Monotonic time (store clock) before which the lease is certainly still held on the server. */
  readonly validUntil: number
  /** Server that holds the lease (`host:port`), or `memory`. */
  readonly server: string
}

export type CreateResult =
  | { readonly acquired: true; readonly lease: Lease }
  | {
      readonly acquired: false
      /** When known: the longest time the current holder's lease can still last, in ms. */
      readonly remainingMs?: number
      /** With `wantServing`: the latest ticket served (see {@link LockStore.enterQueue}); 0 when none. */
      readonly serving?: number
    }

/** What `inspect` sees of a lock. */
export interface LockInfo {
  readonly key: string
  readonly token: string
  readonly owner: OwnerInfo | null
  /** Remaining server-side lifetime in ms (memcached: whole seconds, upper bound), or null when it never expires. */
  readonly remainingMs: number | null
  readonly fence: bigint
  readonly server: string
}

/** Why the store believes a lease is gone (see {@link LockStore.watchLease}). */
export type StoreLossReason = 'disconnected' | 'server-restarted'

export interface CreateOptions {
  /** Also read the holder's remaining TTL when the lock is taken (costs bytes, not a round trip). */
  readonly wantRemaining?: boolean
  /** Also read the waiting line's latest served ticket when the lock is taken (see {@link LockStore.enterQueue}). */
  readonly wantServing?: boolean
  /** Use this owner token instead of a new one (a quorum store grants one token on every server). */
  readonly token?: string
}

export interface LockStore {
  /** The store's monotonic clock; lock validity is computed on it. */
  readonly clock: Clock

  /** Creates the lock if nobody holds it. `ttlMs`: integer, 1000 ms to 30 days minus 1 s. */
  create(key: string, ttlMs: number, owner: OwnerInfo, options?: CreateOptions): Promise<CreateResult>

  /** Extends a lease we hold to `ttlMs` from now. Returns the updated lease, or null when it is no longer ours. */
  extend(lease: Lease, ttlMs: number): Promise<Lease | null>

  /** Deletes the lock only if `lease` still owns it. True when deleted, false when it was not ours (or gone). */
  delete(lease: Lease): Promise<boolean>

  /** Reads the current holder of `key`, or null when free. */
  inspect(key: string): Promise<LockInfo | null>

  /** Deletes `key` whoever holds it: an operator's tool for stuck locks, not for normal use. */
  forceDelete(key: string): Promise<boolean>

  /**
   * Calls `onLost` at most once, as soon as the store learns the lease may be gone (its server
   * restarted or its connection broke). Returns an unsubscribe function.
   */
  watchLease(lease: Lease, onLost: (reason: StoreLossReason, cause?: Error) => void): () => void

  /**
   * Optional: resolves when `key` may have become free (a push from the server), or after
   * `timeoutMs`, or when `signal` aborts, whichever is first. Never rejects. Stores without
   * push simply wait `timeoutMs`.
   */
  waitForRelease?(key: string, timeoutMs: number, signal?: AbortSignal): Promise<void>

  /**
   * Optional, advisory: takes a ticket in the key's cross-process waiting line (1, 2, 3...).
   * A waiter whose ticket is at most `serving + 1` is next and polls fast; the others sleep.
   * Tickets only decide who polls eagerly: mutual exclusion never depends on them.
   */
  enterQueue?(key: string): Promise<number>

  /** Optional, advisory: records that the holder of `ticket` got the lock (fire and forget). */
  markServed?(key: string, ticket: number): void

  /** Optional, advisory: whether the key's waiting line has tickets not yet served (someone waits). */
  hasWaiters?(key: string): Promise<boolean>

  /**
   * Optional: whether another client tried to take `key` after `since` (store clock), i.e.
   * someone else is waiting for it. Best effort. The lock factory uses it to hand a contended
   * lock over fairly: after releasing it, this process lets the others try first.
   */
  contendedSince?(key: string, since: number): boolean

  /** Releases the store's resources (connections). Leases are not released. */
  close(): Promise<void>
}

/** Smallest lease the stores accept, in ms (memcached TTLs are whole seconds). */
export const MIN_TTL_MS = 1000
/** Largest lease, in ms: memcached reads a TTL above 30 days as an absolute Unix time. */
export const MAX_TTL_MS = (2_592_000 - 1) * 1000
