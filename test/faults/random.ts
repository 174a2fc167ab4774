/**
 * Seeded randomness for replayable fault runs, and a wall clock that jumps (for the clock
 * independence scenario).
 */

/** A small, fast, seeded PRNG (mulberry32): numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A child seed: the same parent seed always gives the same children. */
export function deriveSeed(seed: number, salt: number): number {
  return Math.floor(mulberry32((seed ^ Math.imul(salt + 1, 0x9e3779b1)) >>> 0)() * 0x7fffffff);
}

/**
 * Replaces `Date.now()` and argument-less `new Date()` with a wall clock that jumps by up to
 * ±6 hours every 20-70 ms (forward and backward). `performance.now()` is left alone: it is the
 * monotonic clock the library must use. Returns a counter of jumps so far.
 */
export function installClockJumps(random: () => number): { count(): number } {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  let offset = 0;
  let jumps = 0;
  const jump = (): void => {
    offset = Math.round((random() * 2 - 1) * 6 * 3600_000);
    jumps++;
    timer = setTimeout(jump, 20 + random() * 50);
    timer.unref();
  };
  let timer = setTimeout(jump, 10);
  timer.unref();
  class JumpingDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(realNow() + offset);
      else super(...(args as [number]));
    }
    static override now(): number {
      return realNow() + offset;
    }
  }
  globalThis.Date = JumpingDate as DateConstructor;
  return { count: () => jumps };
}
