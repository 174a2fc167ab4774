/**
 * Pending promises made ahead of need, with their resolving functions. A burst of requests takes
 * promises that were made while the thread last waited for replies, instead of making each one
 * in the burst itself, where it delays the socket write that memcached is waiting for.
 *
 * Taking a promise made in another turn does not change whose promise it is: a promise carries
 * no context of its own, and `await` and `then` restore the async context (AsyncLocalStorage)
 * of the code that awaits it, as with a promise made on the spot (tested in
 * test/integration/connection.test.ts). A promise that is never taken is never settled, so it
 * can never be an unhandled rejection.
 */
export class PromisePool<T, E> {
  /** The resolving functions of the promise {@link take} returned last. */
  resolve: (value: T) => void = noop
  reject: (reason: E) => void = noop
  readonly #size: number
  readonly #promises: (Promise<T> | undefined)[] = []
  readonly #resolves: (((value: T) => void) | undefined)[] = []
  readonly #rejects: (((reason: E) => void) | undefined)[] = []
  #count = 0
  #refilling = false

  /** Keeps up to `size` promises made; when half or fewer are left, the next turn makes it full again. */
  constructor(size: number) {
    this.#size = size
  }

  /** How many promises are made and waiting. */
  get available(): number {
    return this.#count
  }

  /** A pending promise; its resolving functions are in {@link resolve} and {@link reject} until the next call. */
  take(): Promise<T> {
    let promise: Promise<T>
    if (this.#count === 0) {
      promise = new Promise<T>(this.#keep)
    } else {
      const i = --this.#count
      promise = this.#promises[i] as Promise<T>
      this.resolve = this.#resolves[i] as (value: T) => void
      this.reject = this.#rejects[i] as (reason: E) => void
      this.#promises[i] = this.#resolves[i] = this.#rejects[i] = undefined
    }
    if (this.#count <= this.#size >> 1 && !this.#refilling) {
      // in the check phase of this loop iteration: after this turn's writes, while the thread
      // waits for replies (unref: a pool never keeps a process alive)
      this.#refilling = true
      setImmediate(this.#refill).unref()
    }
    return promise
  }

  /**
   * The one executor of every promise made here: it leaves the resolving functions in
   * `resolve` and `reject` (the Promise constructor runs it at once), so no closure and
   * context is made per promise.
   */
  readonly #keep = (resolve: (value: T) => void, reject: (reason: E) => void): void => {
    this.resolve = resolve
    this.reject = reject
  }

  readonly #refill = (): void => {
    this.#refilling = false
    while (this.#count < this.#size) {
      const i = this.#count++
      this.#promises[i] = new Promise<T>(this.#keep)
      this.#resolves[i] = this.resolve
      this.#rejects[i] = this.reject
    }
  }
}

function noop(): void {}
