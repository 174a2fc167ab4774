import { InvalidArgumentError } from '../errors.js'
import { describe } from '../protocol/keys.js'
import { MAX_TTL_MS, MIN_TTL_MS } from './lock-store.js'

/** Validates a lease length: an integer number of ms from 1000 to 30 days minus 1 s. */
export function checkTtlMs(value: unknown, name = 'ttlMs'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_TTL_MS || value > MAX_TTL_MS) {
    throw new InvalidArgumentError(
      `${name} must be an integer number of milliseconds from ${MIN_TTL_MS} to ${MAX_TTL_MS} (30 days minus 1 s), got ${describe(value)}`,
    )
  }
  return value
}

/**
 * The memcached TTL (whole seconds) that keeps an item for at least `ttlMs`: the server's clock
 * ticks once a second, so an item stored with T lives between T-1 and T seconds; rounding up
 * and adding one second guarantees the promise.
 */
export function serverTtlSeconds(ttlMs: number): number {
  return Math.ceil(ttlMs / 1000) + 1
}

/** Safety margin subtracted from a lease's local validity for clock drift between client and server: 1% + 2 ms. */
export function driftMs(ttlMs: number): number {
  return Math.ceil(ttlMs * 0.01) + 2
}
