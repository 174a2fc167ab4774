import { InvalidArgumentError } from '../errors.js'
import { describe } from '../protocol/keys.js'
import { checkTtlMs } from '../store/ttl.js'
import { isOptionsObject, stripUndefined } from '../internal/objects.js'

/** What a lock does when the store cannot be reached while acquiring. */
export type UnavailablePolicy =
  /** Throw {@link LockUnavailableError} (the default: mutual exclusion first). */
  | 'fail'
  /** Run the protected code without the lock, and say so (`unlocked` event, `handle.locked === false`, `isHeld` false). */
  | 'proceed'

/** Options of one acquisition. Times in milliseconds. */
export interface AcquireOptions {
  /** Lease length. Integer, 1000 ms to 30 days minus 1 s. @default 30000 */
  ttlMs?: number
  /** Longest wait for the lock before {@link LockTimeoutError}; 0 means one attempt. @default 10000 (`tryAcquire`: 0) */
  waitMs?: number
  /** Cancels waiting ({@link LockAbortedError}); has no effect once the lock is held. */
  signal?: AbortSignal
  /** Renew the lease automatically while held. @default false for acquire/tryAcquire, true for withLock and wrapped functions */
  autoRenew?: boolean
  /** When to renew, as the fraction of the TTL elapsed since the last renewal (0.1 to 0.9). @default 0.34 */
  renewAt?: number
  /** First retry delay while waiting; doubles per attempt, with full jitter. @default 5 */
  retryMinDelayMs?: number
  /** Longest delay between two attempts while waiting (push wake-ups usually come sooner). @default 250 */
  retryMaxDelayMs?: number
  /** What to do when the store is unreachable. @default "fail" */
  onUnavailable?: UnavailablePolicy
  /** A label stored with the lock, shown by `memcached-lock status`. @default none */
  label?: string
}

export interface ResolvedAcquireOptions {
  readonly ttlMs: number
  readonly waitMs: number
  readonly signal: AbortSignal | undefined
  readonly autoRenew: boolean
  readonly renewAt: number
  readonly retryMinDelayMs: number
  readonly retryMaxDelayMs: number
  readonly onUnavailable: UnavailablePolicy
  readonly label: string | undefined
}

export const ACQUIRE_DEFAULTS = {
  ttlMs: 30_000,
  waitMs: 10_000,
  renewAt: 0.34,
  retryMinDelayMs: 5,
  retryMaxDelayMs: 250,
  onUnavailable: 'fail' as UnavailablePolicy,
}

/** Longest allowed wait: 24 hours. Waits are always bounded. */
export const MAX_WAIT_MS = 24 * 3600 * 1000

/** Merges per-call options over per-lock defaults over the library's defaults, and validates them. */
export function resolveAcquireOptions(
  call: AcquireOptions | undefined,
  base: AcquireOptions | undefined,
  implicit: { autoRenew: boolean; waitMs?: number },
): ResolvedAcquireOptions {
  if (call !== undefined && !isOptionsObject(call)) {
    throw new InvalidArgumentError(`options must be an object, got ${describe(call)}`)
  }
  const o = { ...base, ...stripUndefined(call ?? {}) }
  const ttlMs = checkTtlMs(o.ttlMs ?? ACQUIRE_DEFAULTS.ttlMs)
  const waitMs = checkInt(o.waitMs ?? implicit.waitMs ?? ACQUIRE_DEFAULTS.waitMs, 'waitMs', 0, MAX_WAIT_MS)
  const retryMinDelayMs = checkInt(o.retryMinDelayMs ?? ACQUIRE_DEFAULTS.retryMinDelayMs, 'retryMinDelayMs', 1, 60_000)
  const retryMaxDelayMs = checkInt(o.retryMaxDelayMs ?? ACQUIRE_DEFAULTS.retryMaxDelayMs, 'retryMaxDelayMs', retryMinDelayMs, 600_000)
  const renewAt = o.renewAt ?? ACQUIRE_DEFAULTS.renewAt
  if (typeof renewAt !== 'number' || !(renewAt >= 0.1 && renewAt <= 0.9)) {
    throw new InvalidArgumentError(`renewAt must be a number from 0.1 to 0.9 (fraction of the TTL), got ${describe(renewAt)}`)
  }
  const autoRenew = o.autoRenew ?? implicit.autoRenew
  if (typeof autoRenew !== 'boolean') throw new InvalidArgumentError(`autoRenew must be a boolean, got ${describe(autoRenew)}`)
  const policy = o.onUnavailable ?? ACQUIRE_DEFAULTS.onUnavailable
  if (policy !== 'fail' && policy !== 'proceed') {
    throw new InvalidArgumentError(`onUnavailable must be "fail" or "proceed", got ${describe(policy)}`)
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw new InvalidArgumentError(`signal must be an AbortSignal, got ${describe(o.signal)}`)
  }
  if (o.label !== undefined && (typeof o.label !== 'string' || o.label.length > 200)) {
    throw new InvalidArgumentError(`label must be a string of at most 200 characters, got ${describe(o.label)}`)
  }
  return { ttlMs, waitMs, signal: o.signal, autoRenew, renewAt, retryMinDelayMs, retryMaxDelayMs, onUnavailable: policy, label: o.label }
}

export function checkInt(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${describe(v)}`)
  }
  return v
}

