/**
 * Method decorators over `locks.wrap()`, for both TC39 standard decorators (TypeScript >= 5)
 * and legacy `experimentalDecorators` (NestJS, TypeORM-era code). The same function serves
 * both: it tells them apart by its arguments.
 */
import { InvalidArgumentError } from '../errors.js'
import { describe } from '../protocol/keys.js'
import { isLocks, type Locks } from '../lock/locks.js'
import type { Serializer, SerializedWrapOptions } from '../lock/serializer.js'
import { checkWrapOptions, wrapWithLock, type WrapOptions } from '../lock/wrap.js'

/**
 * The factory to use: an instance, or a function of `this` (e.g. `(self) => self.locks`), resolved
 * at call time. `Self` is the decorated method's instance: `(self: Orders) => self.locks` checks
 * it; without an annotation it is `any`, so `(self) => self.locks` type-checks too.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above: a decorator argument cannot be typed from the class it decorates
export type LocksSource<Self = any> = Locks | ((self: Self) => Locks)

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyMethod = (this: unknown, ...args: any[]) => unknown

/**
 * `@Locked(locks, { key: (order) => `order:${order.id}` })`: every call of the method runs
 * under the lock named by `key` (called with the instance as `this`). `kind: "reentrant"` lets
 * a locked method call another method locked on the same key.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- `Self`: see LocksSource
export function Locked<A extends unknown[], Self = any>(source: LocksSource<Self>, options: WrapOptions<A>) {
  if (!isLocks(source) && typeof source !== 'function') {
    throw new InvalidArgumentError(`@Locked needs a Locks instance or a function returning one, got ${describe(source)}`)
  }
  if (typeof options?.key !== 'function') {
    throw new InvalidArgumentError(`@Locked options.key must be a function returning the lock key, got ${describe(options?.key)}`)
  }
  // bad options fail where the method is decorated, not at its first call
  checkWrapOptions(options)
  return decorateFromSource(
    (self) => {
      const locks: unknown = isLocks(source) ? source : source(self as Self)
      if (!isLocks(locks)) throw new InvalidArgumentError(`@Locked: the locks function returned ${describe(locks)}, not a Locks instance`)
      return locks
    },
    (locks, method: (...a: A) => unknown) => wrapWithLock(locks, method, options),
  )
}

/**
 * `@Serialized(serializer, { key: (order) => `order:${order.id}` })`: every call of the method
 * runs through `serializer.run` for that object key (lock held across read, commit and
 * conflict retries). The serializer may also be given as a function of `this`.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- `Self`: see LocksSource
export function Serialized<A extends unknown[], Self = any>(source: Serializer | ((self: Self) => Serializer), options: SerializedWrapOptions<A>) {
  if (typeof source !== 'function' && typeof (source as Serializer | null)?.run !== 'function') {
    throw new InvalidArgumentError(`@Serialized needs a Serializer or a function returning one, got ${describe(source)}`)
  }
  if (typeof options?.key !== 'function') {
    throw new InvalidArgumentError(`@Serialized options.key must be a function returning the object key, got ${describe(options?.key)}`)
  }
  return decorateFromSource(
    (self) => {
      const serializer = typeof source === 'function' ? source(self as Self) : source
      if (typeof serializer?.run !== 'function') throw new InvalidArgumentError(`@Serialized: the serializer function returned ${describe(serializer)}`)
      return serializer
    },
    (serializer, method: (...a: A) => unknown) => serializer.wrap(method, options),
  )
}

/**
 * Builds a method decorator whose lock factory (or serializer) is resolved from `this` at each
 * call, with one wrapped function per source. The method returns a promise: a failure to resolve
 * the source rejects it, never throws.
 */
function decorateFromSource<S extends object, A extends unknown[]>(
  resolve: (self: unknown) => S,
  wrap: (source: S, method: (...args: A) => unknown) => (...args: A) => Promise<unknown>,
) {
  return decorateWith((method) => {
    const cache = new WeakMap<S, (...args: A) => Promise<unknown>>()
    return function (this: unknown, ...args: A): Promise<unknown> {
      let source: S
      try {
        source = resolve(this)
      } catch (err) {
        return Promise.reject(err)
      }
      let wrapped = cache.get(source)
      if (!wrapped) {
        wrapped = wrap(source, method as unknown as (...a: A) => unknown)
        cache.set(source, wrapped)
      }
      return wrapped.apply(this, args)
    }
  })
}

/** @internal Builds a decorator usable as a standard or a legacy method decorator. */
export function decorateWith(make: (method: AnyMethod) => AnyMethod) {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a decorator returns different things to the two decorator protocols
  return function decorator(target: unknown, contextOrKey: unknown, descriptor?: PropertyDescriptor): any {
    if (typeof contextOrKey === 'object' && contextOrKey !== null && 'kind' in contextOrKey) {
      const kind = (contextOrKey as { kind: string }).kind
      if (kind !== 'method' || typeof target !== 'function') {
        throw new InvalidArgumentError(`lock decorators apply to methods, not to a ${kind}`)
      }
      return keepName(make(target as AnyMethod), target as AnyMethod)
    }
    if (!descriptor || typeof descriptor.value !== 'function') {
      throw new InvalidArgumentError(`lock decorators apply to methods; ${String(contextOrKey)} is not a method`)
    }
    descriptor.value = keepName(make(descriptor.value as AnyMethod), descriptor.value as AnyMethod)
    return descriptor
  }
}

function keepName(wrapped: AnyMethod, original: AnyMethod): AnyMethod {
  Object.defineProperty(wrapped, 'name', { value: original.name, configurable: true })
  return wrapped
}
