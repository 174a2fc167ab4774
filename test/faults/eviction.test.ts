/**
 * Memory pressure: a cache filler writes far more than memcached's memory (-m 8) while worker
 * processes hold locks.
 *
 * - Eviction on (memcached's default): memcached may evict a lock before its TTL, and then two
 *   holders can overlap while both leases are valid by the library's account. This is the
 *   failure mode the library warns about at connect: the test asserts that every worker got
 *   the eviction warning and reports the overlaps it saw, honestly, as the documented failure.
 * - Eviction off (-M), filler in other slab classes (values of 1-4 KB): the lock items' slab
 *   class keeps its memory; full memory only refuses the filler: zero violations.
 * - Eviction off (-M), filler in the lock items' own slab classes: memory for lock items runs
 *   out, and memcached 1.6.18 then DELETES the existing item whenever a store to its key fails
 *   for lack of memory ("avoid stale data", for every ms mode, add included): a waiter's failed
 *   acquire deletes the holder's lock and the next waiter gets it. A failure mode of -M the
 *   library cannot prevent; the test reports it honestly and checks it is the cause.
 * - Temporary LRU (-o temporary_ttl=61): lock keys (TTL <= 61 s) live in an LRU that is never
 *   evicted, and the filler's items are evicted instead: zero violations, no warning.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { Connection, LockLostError, Locks } from '../../src/index.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { assertSafe, FaultRun, scenarioSeeds, sleep, total } from './harness.js';

const FILE = 'test/faults/eviction.test.ts';
const servers: MemcachedServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

/**
 * Writes values of `sizes` bytes as fast as a few pipelined connections allow, until stopped.
 * Returns the stop function and counters.
 */
function startFiller(
  server: MemcachedServer,
  random: () => number,
  sizes: [number, number],
): { stop: () => Promise<{ stored: number; refused: number }> } {
  let running = true;
  let stored = 0;
  let refused = 0;
  const conns = [0, 1].map(() => new Connection({ host: server.host, port: server.port }, { requestTimeoutMs: 5_000 }));
  const loops = conns.map(async (c, ci) => {
    let i = 0;
    while (running) {
      const batch: Promise<unknown>[] = [];
      for (let j = 0; j < 64; j++) {
        const len = sizes[0] + Math.floor(random() * (sizes[1] - sizes[0]));
        batch.push(
          c.metaSet({ wire: `fill:${ci}:${i++}`, base64: false }, 'x'.repeat(len), ['T0']).then(
            (r) => (r.status === 'HD' ? stored++ : refused++),
            () => refused++,
          ),
        );
      }
      await Promise.all(batch);
      await new Promise((r) => setImmediate(r));
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      await Promise.all(conns.map((c) => c.close()));
      return { stored, refused };
    },
  };
}

/** Lock items are ~150 bytes: values of 50-400 bytes share their slab classes; 1-4 KB values do not. */
const SAME_CLASSES: [number, number] = [50, 400];
const OTHER_CLASSES: [number, number] = [1_000, 4_000];

async function serverStats(server: MemcachedServer): Promise<Record<string, string>> {
  const c = new Connection({ host: server.host, port: server.port });
  try {
    return await c.stats();
  } finally {
    await c.close();
  }
}

async function evictionRun(variant: string, args: string[], seed: number, sizes = SAME_CLASSES, failureMode = false) {
  const server = await MemcachedServer.start({ memoryMb: 8, args });
  servers.push(server);
  const run = await FaultRun.start({
    scenario: `eviction-${variant}`,
    file: FILE,
    seed,
    server,
    workers: 3,
    keys: 4,
    // long holds with renewal keep lock items resident for seconds, as real ones are
    worker: { durationMs: 6_000, ttlMs: 2_000, holdMs: [200, 1_500], renew: 'mixed', overrunChance: 0, errorPauseMs: 50 },
  });
  run.go();
  await sleep(300);
  run.fault(`cache filler starts (values of ${sizes[0]}-${sizes[1]} bytes, memcached -m 8 ${args.join(' ')})`);
  const filler = startFiller(server, run.random, sizes);
  await sleep(5_000);
  const counts = await filler.stop();
  run.fault(`cache filler stops: ${counts.stored} stored, ${counts.refused} refused`);
  const o = await run.finish({ timeoutMs: 40_000, ...(failureMode ? { expect: ['overlap'], expectEarlyLoss: true } : {}) });
  const stats = await serverStats(server);
  console.log(
    `[faults] eviction-${variant} seed=${seed}: server stats evictions=${stats.evictions} store_no_memory=${stats.store_no_memory} ` +
      `slab_reassign_evictions_nomem=${stats.slab_reassign_evictions_nomem}`,
  );
  return { o, counts, stats };
}

describe('faults - memory pressure', () => {
  for (const seed of scenarioSeeds(2)) {
    test(`eviction - eviction on (default): the library warns; overlaps are the documented failure mode (seed ${seed})`, async () => {
      const { o, counts } = await evictionRun('on', [], seed, SAME_CLASSES, true);
      assert.deepEqual(o.workerProblems, []);
      assert.ok(counts.stored > 50_000, `the filler wrote well past 8 MB (${counts.stored} items)`);
      for (const s of o.summaries) assert.ok(s.warnings.some((w) => /evict/.test(w)), `worker ${s.proc} was warned about eviction`);
      const overlaps = o.result.counts.overlap;
      console.log(
        `[faults] eviction-on seed=${seed}: ${overlaps} overlap(s), ${o.result.counts['stale-write']} stale write(s) accepted, ` +
          `${o.result.stats.lostByReason.taken ?? 0} lease(s) found taken: the documented failure mode of memcached with eviction on`,
      );
      // whatever eviction did, fencing still orders the grants and the resource stays consistent
      assertSafe(o, { allow: ['overlap'] });
    });
  }

  for (const seed of scenarioSeeds(2)) {
    test(`eviction - eviction off (-M), filler in other slab classes: full memory refuses the filler only, zero violations (seed ${seed})`, async () => {
      const { o, counts, stats } = await evictionRun('off', ['-M'], seed, OTHER_CLASSES);
      assertSafe(o);
      assert.ok(counts.refused > 0, 'memory filled up (the filler was refused)');
      assert.equal(stats.evictions, '0');
      assert.ok(o.result.stats.leases > 0);
      assert.deepEqual(o.summaries.flatMap((s) => s.warnings), [], '-M is not warned about');
    });
  }

  for (const seed of scenarioSeeds(1)) {
    test(`eviction - eviction off (-M), lock slab classes exhausted: failed stores delete locks (documented failure mode) (seed ${seed})`, async () => {
      const { o, stats } = await evictionRun('off-exhausted', ['-M'], seed, SAME_CLASSES, true);
      assert.deepEqual(o.workerProblems, []);
      assert.equal(stats.evictions, '0', 'nothing was evicted: -M');
      console.log(
        `[faults] eviction-off-exhausted seed=${seed}: ${o.result.counts.overlap} overlap(s), ${o.result.stats.lostByReason.taken ?? 0} lease(s) found taken, ` +
          `${stats.store_no_memory} stores refused for lack of memory: memcached deletes an item when a store to its key fails (documented failure mode of -M)`,
      );
      if (o.result.counts.overlap > 0) assert.ok(Number(stats.store_no_memory) > 0, 'overlaps only where memory ran out');
      assertSafe(o, { allow: ['overlap'] });
    });
  }

  test('eviction - -M, memory full: a renewal refused for lack of memory is reported as a loss at once', async () => {
    const server = await MemcachedServer.start({ memoryMb: 8, args: ['-M'] });
    servers.push(server);
    const locks = new Locks({ servers: server.address, prefix: 'oom:', pushWakeups: false, requestTimeoutMs: 5_000 });
    const filler = new Connection({ host: server.host, port: server.port }, { requestTimeoutMs: 5_000 });
    try {
      const h = await locks.mutex('held').acquire({ ttlMs: 30_000 });
      // exhaust every slab class up to ~1 KB items, so the renewal's new item finds no memory
      for (let size = 1; size <= 1_000; size += 8) {
        let refused = false;
        for (let i = 0; !refused; i += 64) {
          const batch = Array.from({ length: 64 }, (_, j) =>
            filler.metaSet({ wire: `fill:${size}:${i + j}`, base64: false }, 'x'.repeat(size), ['T0']).then(
              () => false,
              () => true,
            ),
          );
          refused = (await Promise.all(batch)).some(Boolean);
        }
      }
      assert.ok(h.isHeld);
      // memcached answers SERVER_ERROR out of memory and unlinks the item: the lease is gone
      await assert.rejects(h.extend(), (err: unknown) => err instanceof LockLostError && err.reason === 'taken');
      assert.equal(h.state, 'lost');
      assert.equal(await locks.inspect('held'), null, 'memcached did delete the item');
    } finally {
      await filler.close();
      await locks.close();
    }
  });

  test('eviction - memcached fact: with -M and memory full, a failed add (an acquire attempt) deletes the holder\'s item', async () => {
    const server = await MemcachedServer.start({ memoryMb: 8, args: ['-M'] });
    servers.push(server);
    const c = new Connection({ host: server.host, port: server.port }, { requestTimeoutMs: 5_000 });
    const key = (wire: string) => ({ wire, base64: false });
    try {
      assert.equal((await c.metaSet(key('lock:x'), 'holder', ['T60', 'ME', 'c'])).status, 'HD');
      let i = 0;
      let refused = 0;
      while (refused < 500) {
        const batch: Promise<unknown>[] = [];
        for (let j = 0; j < 64; j++) batch.push(c.metaSet(key(`fill:${i++}`), 'x'.repeat(6 + (i % 8)), ['T0']).catch(() => refused++));
        await Promise.all(batch);
      }
      assert.equal((await c.metaGet(key('lock:x'), ['v'])).status, 'VA', 'the lock survived the filling');
      await assert.rejects(c.metaSet(key('lock:x'), 'waiter', ['T60', 'ME', 'c']), /out of memory/);
      assert.equal((await c.metaGet(key('lock:x'), ['v'])).status, 'EN', 'the failed add deleted the holder\'s item');
      const next = await c.metaSet(key('lock:x'), 'second', ['T60', 'ME', 'c']);
      assert.equal(next.status, 'HD', 'and the next acquire attempt wins: two holders');
    } finally {
      await c.close();
    }
  });

  for (const seed of scenarioSeeds(1)) {
    test(`eviction - temporary LRU (-o temporary_ttl=61): locks are never evicted, no warning, zero violations (seed ${seed})`, async () => {
      const { o, counts } = await evictionRun('temp-lru', ['-o', 'temporary_ttl=61'], seed);
      assertSafe(o);
      assert.ok(counts.stored > 50_000);
      assert.deepEqual(
        o.summaries.flatMap((s) => s.warnings),
        [],
      );
      assert.ok(total(o, (s) => s.acquisitions) > 0);
    });
  }
});
