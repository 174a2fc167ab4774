import { InvalidArgumentError } from '../errors.js'
import { describe } from '../protocol/keys.js'
import type { EventEmitter } from 'node:events'

interface Releasable {
  readonly key: string
  release(): Promise<boolean>
}

/** Acquire, run, release in all cases. A failed release is reported as a `renewal-error` event, never thrown over `fn`'s outcome. */
export async function runScoped<H extends Releasable, T>(
  events: EventEmitter,
  acquire: () => Promise<H>,
  fn: (handle: H) => Promise<T> | T,
  run: (handle: H, call: () => Promise<T> | T) => Promise<T> | T = (_, call) => call(),
): Promise<T> {
  if (typeof fn !== 'function') throw new InvalidArgumentError(`fn must be a function, got ${describe(fn)}`)
  const handle = await acquire()
  try {
    return await run(handle, () => fn(handle))
  } finally {
    try {
      await handle.release()
    } catch (err) {
      events.emit('renewal-error', handle.key, err)
    }
  }
}
