/**
 * Small shared test utilities: unique keys, a fake monotonic clock, bounded waits.
 */
import { randomBytes } from 'node:crypto';

let counter = 0;

/** A key no other test (or run) uses: `<name>-<pid>-<counter>-<random>`. */
export function uniqueKey(name: string): string {
  counter++;
  return `${name}-${process.pid}-${counter}-${randomBytes(3).toString('hex')}`;
}

/** A monotonic clock that only moves when told to. */
export class FakeClock {
  #now: number;
  constructor(start = 1_000) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves with `p`'s value, or rejects with "<what> did not happen within <ms> ms". The bound
 * is a hang guard, generous on purpose: it is never a performance assertion.
 */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Calls `fn` until it resolves (not throws), every `everyMs`, for at most `ms`. */
export async function eventually<T>(fn: () => Promise<T>, ms = 10_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await sleep(everyMs);
    }
  }
}

/** Settles to `{ ok, value | error }` without ever rejecting. */
export async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}
