import { InvalidArgumentError } from '../errors.js'
import { describe } from '../protocol/keys.js'
import { resolveAcquireOptions, type AcquireOptions } from './lock-options.js'
import type { Locks } from './locks.js'

/**
 * Returned by a key function to run that call without a lock (the original library's
 * `DontLock`).
 */
export const SKIP_LOCK: unique symbol = Symbol.for('memcached-lock.skip')

/** Computes a call's lock key from its arguments; `this` is the call's `this`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- `this` is the call's, whatever the wrapped function is called on (`function (this: Orders) {...}` must fit)
export type KeyFunction<A extends unknown[]> = (this: any, ...args: A) => string | typeof SKIP_LOCK

export interface WrapOptions<A extends unknown[]> extends AcquireOptions {
  /** The lock key of a call, or {@link SKIP_LOCK}. */
  key: KeyFunction<A>
  /** `mutex` (default) or `reentrant` (nested calls in the same async call tree re-enter). */
  kind?: 'mutex' | 'reentrant'
}

/**
 * @internal Checks wrap options when a function is wrapped (or a method decorated), so a bad
 * option fails there rather than at every call.
 */
export function checkWrapOptions<A extends unknown[]>(
  options: WrapOptions<A>,
): { keyOf: KeyFunction<A>; kind: 'mutex' | 'reentrant'; acquire: AcquireOptions } {
  if (typeof options !== 'object' || options === null || typeof options.key !== 'function') {
    throw new InvalidArgumentError(`options.key must be a function returning the lock key, got ${describe(options?.key)}`)
  }
  const { key: keyOf, kind = 'mutex', ...acquire } = options
  if (kind !== 'mutex' && kind !== 'reentrant') throw new InvalidArgumentError(`kind must be "mutex" or "reentrant", got ${describe(kind)}`)
  resolveAcquireOptions(acquire, undefined, { autoRenew: true })
  return { keyOf, kind, acquire }
}

/** @internal Implements `locks.wrap()` and the decorators. */
export function wrapWithLock<A extends unknown[], R>(
  locks: Locks,
  fn: (...args: A) => Promise<R> | R,
  options: WrapOptions<A>,
): (...args: A) => Promise<R> {
  if (typeof fn !== 'function') throw new InvalidArgumentError(`fn must be a function, got ${describe(fn)}`)
  const { keyOf, kind, acquire } = checkWrapOptions(options)
  return keyedWrapper(fn, keyOf, (key, call) => {
    const lock = kind === 'mutex' ? locks.mutex(key) : locks.reentrant(key)
    return lock.withLock(call, acquire)
  })
}

/**
 * @internal The wrapper shared by `locks.wrap` and `serializer.wrap`: computes each call's key
 * (with the call's `this`), runs the call directly on {@link SKIP_LOCK}, refuses anything but a
 * non-empty string, and otherwise hands the call to `run`. Keeps `fn`'s name and length.
 */
export function keyedWrapper<A extends unknown[], R>(
  fn: (...args: A) => Promise<R> | R,
  keyOf: KeyFunction<A>,
  run: (key: string, call: () => Promise<R> | R) => Promise<R>,
): (...args: A) => Promise<R> {
  const wrapped = async function (this: unknown, ...args: A): Promise<R> {
    const key = keyOf.apply(this, args)
    if (key === SKIP_LOCK) return fn.apply(this, args)
    if (typeof key !== 'string' || key.length === 0) {
      throw new InvalidArgumentError(`the key function must return a non-empty string or SKIP_LOCK, got ${describe(key)}`)
    }
    return run(key, () => fn.apply(this, args))
  }
  Object.defineProperty(wrapped, 'name', { value: fn.name, configurable: true })
  Object.defineProperty(wrapped, 'length', { value: fn.length, configurable: true })
  return wrapped
}
