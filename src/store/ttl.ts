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

/** memcached reads a TTL above 30 days as an absolute Unix time. */
const MAX_SERVER_TTL_S = 2_592_000

/**
 * The memcached TTL (whole seconds) that keeps an item for at least `ttlMs`. The server's clock
 * is `floor(monotonic seconds)` sampled by a timer that fires about once a second, a little
 * late each time; when the sampling phase crosses a second boundary, one tick advances the clock
 * by 2. So an item stored with T lives more than T-2 seconds (not T-1: the fault suite saw T2
 * lock items gone after 0.2-0.7 s). Rounding up and adding two seconds keeps the promise. At the
 * 30-day cap the missing second is covered many times over by the drift margin (1%).
 */
export function serverTtlSeconds(ttlMs: number): number {
  return Math.min(Math.ceil(ttlMs / 1000) + 2, MAX_SERVER_TTL_S)
}

/**
 * How long past a lease's validity its item may still live on memcached: the TTL rounded up to
 * whole seconds plus 2 s (see serverTtlSeconds). A delete that was not heard is worth trying
 * again until then: till the item expires, nobody else can take the key.
 */
export const ITEM_LINGER_MS = 3000

/** Safety margin subtracted from a lease's local validity for clock drift between client and server: 1% + 2 ms. */
export function driftMs(ttlMs: number): number {
  return Math.ceil(ttlMs * 0.01) + 2
}
