/**
 * Client process faults: a worker frozen with SIGSTOP for longer than its TTL, then resumed
 * (a GC pause, a VM migration), and a worker killed outright (SIGKILL). A frozen holder must
 * learn on resume that its lease ran out (signalled lost), and nobody may be granted the lock
 * while the frozen holder's lease was still valid by its own account. A killed holder's locks
 * come free by TTL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemcachedServer } from '../helpers/memcached-server.js';
import { assertSafe, FaultRun, scenarioSeeds, sleep } from './harness.js';

const FILE = 'test/faults/pause.test.ts';
let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server?.stop();
});

describe('faults - client paused and killed', () => {
  for (const seed of scenarioSeeds(3)) {
    test(`pause - a holder frozen (SIGSTOP) past its TTL learns of the loss on resume; no overlap (seed ${seed})`, async () => {
      const run = await FaultRun.start({
        scenario: 'sigstop',
        file: FILE,
        seed,
        server,
        workers: 3,
        worker: { durationMs: 10_000 },
        // the victim holds long and renews, so it is almost always holding when frozen
        perWorker: (i) => (i === 0 ? { holdMs: [300, 900], renew: 'auto', overrunChance: 0 } : {}),
      });
      const victim = run.workers[0]!;
      run.go();
      const pauses: [number, number][] = [];
      await sleep(run.between(800, 1500));
      for (let i = 0; i < 1; i++) {
        // longer than the lease's validity and than the item's whole life on the server: an item
        // stored with T (3 s for a 1 s lease) can live up to T+1 s, the server clock lagging by up to 1 s
        const ms = run.between(4_500, 5_500);
        assert.ok(await victim.holding(), 'the victim took a lock');
        run.fault(`SIGSTOP worker ${victim.proc} (pid ${victim.pid}), holding ${victim.openLeases().join(', ')}, for ${ms} ms (TTL 1000 ms)`);
        const from = run.faults.at(-1)!.t;
        victim.pause();
        await sleep(ms);
        victim.resume();
        run.fault(`SIGCONT worker ${victim.proc}`);
        pauses.push([from, run.faults.at(-1)!.t]);
        await sleep(run.between(500, 1000));
      }
      const o = await run.finish();
      assertSafe(o);
      // leases the victim held across a pause: the server forgot them, so each must have been signalled lost
      const spanning = o.history.filter(
        (e) =>
          e.type === 'acquire' &&
          e.proc === victim.proc &&
          pauses.some(([from]) => e.t < from && !o.history.some((x) => (x.type === 'release' || x.type === 'lost') && x.holder === e.holder && x.t < from)),
      );
      console.log(`[faults] sigstop seed=${seed}: ${spanning.length} lease(s) held across a pause`);
      assert.ok(spanning.length > 0, 'the victim held a lock when it was frozen');
      for (const a of spanning) {
        const { holder, key } = a as { holder: string; key: string };
        const [from, to] = pauses.find(([f]) => a.t < f)!;
        assert.ok(
          o.history.some((e) => e.type === 'acquire' && e.key === key && e.proc !== victim.proc && e.t > from && e.t < to),
          `another worker took ${key} while ${holder} was frozen`,
        );
        // the holder hears of it: a loss signal, or (when it released first, on waking, before
        // the expiry check ran) a release that failed: its requests timed out across the pause
        const lost = o.history.find((e) => e.type === 'lost' && e.holder === holder);
        const release = o.history.find((e) => e.type === 'release' && e.holder === holder);
        assert.ok(
          lost || (release?.type === 'release' && release.error !== undefined),
          `lease ${holder}, held across a pause, was signalled lost or its release failed (${JSON.stringify(release)})`,
        );
        assert.ok(!(release?.type === 'release' && release.deleted), `the release of ${holder} did not delete the successor's lock`);
      }
      assert.ok(o.summaries[0]!.acquisitions > 0);
    });
  }

  for (const seed of scenarioSeeds(2)) {
    test(`pause - a holder killed (SIGKILL): its locks come free by TTL, no overlap (seed ${seed})`, async () => {
      const run = await FaultRun.start({
        scenario: 'client-kill',
        file: FILE,
        seed,
        server,
        workers: 3,
        worker: { durationMs: 5_000 },
        perWorker: (i) => (i === 0 ? { holdMs: [300, 900], renew: 'auto', overrunChance: 0 } : {}),
      });
      run.go();
      await sleep(run.between(1000, 2000));
      run.fault(`SIGKILL worker ${run.workers[0]!.proc} (pid ${run.workers[0]!.pid})`);
      run.workers[0]!.kill();
      const o = await run.finish();
      assertSafe(o);
      const killedAt = run.faults[0]!.t;
      assert.ok(o.history.some((e) => e.type === 'acquire' && e.proc !== 'w1' && e.t > killedAt), 'the others carried on');
    });
  }
});
