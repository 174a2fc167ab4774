/**
 * Server restart and crash: memcached restarted (SIGTERM) or killed (SIGKILL) and brought back
 * in the middle of a run of several worker processes. Held leases vanish with the server: the
 * library must signal every one of them lost, never let two valid holders overlap, and keep
 * fencing tokens increasing across the restart.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemcachedServer } from '../helpers/memcached-server.js';
import type { AcquireEvent } from './recorder.js';
import { assertSafe, FaultRun, lostFor, scenarioSeeds, sleep, type RunOutcome } from './harness.js';

const FILE = 'test/faults/restart.test.ts';
let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server?.stop();
});

describe('faults - server restart', () => {
  for (const seed of scenarioSeeds(3)) {
    test(`restart - graceful restart mid-run: losses signalled, no overlap, fences increase (seed ${seed})`, async () => {
      const run = await FaultRun.start({ scenario: 'restart', file: FILE, seed, server, workers: 3 });
      run.go();
      await sleep(run.between(1200, 2500));
      run.fault(`restart memcached (SIGTERM, pid ${server.pid})`);
      await server.restart();
      run.fault(`memcached back (pid ${server.pid})`);
      const o = await run.finish();
      assertSafe(o);
      const back = run.faults[1]!.t;
      assert.ok(o.history.some((e) => e.type === 'acquire' && e.t > back), 'locks were granted again after the restart');
    });
  }

  for (const seed of scenarioSeeds(3)) {
    test(`restart - crash (SIGKILL) and return: losses signalled, no overlap, fences increase (seed ${seed})`, async () => {
      const run = await FaultRun.start({ scenario: 'kill', file: FILE, seed, server, workers: 3 });
      run.go();
      await sleep(run.between(1200, 2500));
      run.fault(`kill memcached (SIGKILL, pid ${server.pid})`);
      await server.kill();
      const down = run.between(0, 1200);
      await sleep(down);
      await server.restart();
      run.fault(`memcached back after ${down} ms (pid ${server.pid})`);
      const o = await run.finish();
      assertSafe(o);
      assert.ok(lostFor(o, 'disconnected', 'server-restarted') + o.result.stats.released > 0);
      const back = run.faults[1]!.t;
      assert.ok(o.history.some((e) => e.type === 'acquire' && e.t > back), 'locks were granted again after the crash');
    });
  }

  for (const seed of scenarioSeeds(3)) {
    test(`restart - crash loop (killed again within a second of coming back): fences still increase (seed ${seed})`, async () => {
      const run = await FaultRun.start({ scenario: 'crashloop', file: FILE, seed, server, workers: 3, worker: { durationMs: 7_000 } });
      run.go();
      await sleep(run.between(800, 1500));
      for (let i = 0; i < 4; i++) {
        run.fault(`kill memcached (SIGKILL, pid ${server.pid})`);
        await server.kill();
        await sleep(run.between(0, 300));
        await server.restart();
        const up = run.between(150, 900);
        run.fault(`memcached back (pid ${server.pid}), up for ${up} ms`);
        await sleep(up);
      }
      const o = await run.finish({ expect: ['fence-order'] });
      // KNOWN BUG (reported): the fence's high part is the server's boot second (`time - uptime`),
      // so a server that restarts within the same second as its previous boot hands out fences
      // lower than the previous boot's. Tolerated here only in exactly that shape; anything else
      // (and every other check) must be clean.
      const known = sameSecondRestartFenceViolations(o);
      assertSafe(o, { allow: ['fence-order'] });
      const other = o.result.violations.filter((v) => v.check === 'fence-order' && !known.includes(v));
      assert.deepEqual(other.map((v) => v.message), [], 'fence-order violations not explained by a same-second restart');
      if (known.length > 0) console.log(`[faults] crashloop seed=${seed}: KNOWN BUG: ${known.length} fence-order violation(s) across restarts within one second`);
    });
  }
});

describe('faults - restart while a holder is cut off', () => {
  for (const seed of scenarioSeeds(2)) {
    test(`restart - memcached restarts while a holder is partitioned: overlaps only there (the documented limit) (seed ${seed})`, async () => {
      const run = await FaultRun.start({
        scenario: 'partition-restart',
        file: FILE,
        seed,
        server,
        workers: 3,
        proxied: true,
        worker: { durationMs: 6_000 },
        perWorker: (i) => (i === 0 ? { holdMs: [400, 900], renew: 'auto', overrunChance: 0 } : {}),
      });
      run.go();
      await sleep(run.between(1000, 1800));
      run.fault('black hole (drop) on w1: it cannot hear the restart');
      run.proxies[0]!.blackHole(true, 'drop');
      run.fault(`kill memcached (SIGKILL, pid ${server.pid})`);
      await server.kill();
      await server.restart();
      run.fault(`memcached back (pid ${server.pid})`);
      const restartedAt = run.faults[1]!.t;
      await sleep(1_500);
      run.proxies[0]!.blackHole(false);
      run.fault('black hole lifted on w1');
      const o = await run.finish({ expect: ['overlap'] });
      const acquired = new Map<string, AcquireEvent>();
      for (const e of o.history) if (e.type === 'acquire') acquired.set(e.holder, e);
      // memcached forgets every lock when it restarts; a holder that cannot hear it keeps a lease
      // that is valid by its own account until renewal fails or validity runs out
      const explained = o.result.violations.filter(
        (v) => v.check === 'overlap' && v.holders.some((h) => h.startsWith('w1:') && acquired.get(h)!.t < restartedAt),
      );
      console.log(`[faults] partition-restart seed=${seed}: ${explained.length} overlap(s) between w1 (cut off during the restart) and holders granted after it: the documented limit`);
      assertSafe(o, { allow: ['overlap'] });
      assert.deepEqual(
        o.result.violations.filter((v) => !explained.includes(v)).map((v) => v.message),
        [],
        'every overlap involves the lease w1 held, cut off, across the restart',
      );
    });
  }
});

/** Fence-order violations between leases granted by two server processes that booted in the same second. */
function sameSecondRestartFenceViolations(o: RunOutcome) {
  const acquired = new Map<string, AcquireEvent>();
  for (const e of o.history) if (e.type === 'acquire') acquired.set(e.holder, e);
  return o.result.violations.filter((v) => {
    if (v.check !== 'fence-order') return false;
    const [a, b] = v.holders.map((h) => acquired.get(h)?.server?.split('/'));
    // server = pid/bootEpoch/generation
    return a && b && a[0] !== b[0] && a[1] === b[1];
  });
}
