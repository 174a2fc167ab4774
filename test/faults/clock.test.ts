/**
 * Clock independence: lease validity must come from the monotonic clock, never from wall time.
 * One worker's wall clock (`Date.now()`, `new Date()`) jumps by up to ±6 hours dozens of times
 * a second while it competes with two normal workers. Its leases must behave exactly as theirs:
 * the same validity at acquisition, expiry noticed on time when a hold overruns, no spurious
 * losses, and a history with no violation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemcachedServer } from '../helpers/memcached-server.js';
import { assertSafe, FaultRun, scenarioSeeds } from './harness.js';

const FILE = 'test/faults/clock.test.ts';
const TTL = 1_000;
/** What the library promises at acquisition: the TTL minus its drift margin (1% + 2 ms). */
const VALID = TTL - (Math.ceil(TTL * 0.01) + 2);
let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server?.stop();
});

describe('faults - wall clock jumps', () => {
  for (const seed of scenarioSeeds(2)) {
    test(`clock - a worker whose wall clock jumps by hours keeps leases exactly like the others (seed ${seed})`, async () => {
      const run = await FaultRun.start({
        scenario: 'clock',
        file: FILE,
        seed,
        server,
        workers: 3,
        worker: { durationMs: 6_000, ttlMs: TTL, overrunChance: 0.15 },
        perWorker: (i) => (i === 0 ? { clockJumps: true, overrunChance: 0.3 } : {}),
      });
      run.fault('worker w1: Date.now() and new Date() jump by up to ±6 h every 20-70 ms');
      run.go();
      const o = await run.finish({ timeoutMs: 40_000 });
      assertSafe(o);
      const [jumpy, ...normal] = o.summaries;
      assert.ok(jumpy && jumpy.proc === 'w1');
      console.log(
        `[faults] clock seed=${seed}: ${jumpy.clockJumps} wall-clock jumps; remainingMs at acquisition ` +
          o.summaries.map((s) => `${s.proc} ${s.remainingAtAcquire.min.toFixed(1)}-${s.remainingAtAcquire.max.toFixed(1)}`).join(', ') +
          '; expiry noticed late by ' +
          o.summaries.map((s) => `${s.proc} ${s.expiryLateness.count}x ${s.expiryLateness.min?.toFixed(1)}..${s.expiryLateness.max?.toFixed(1)} ms`).join(', '),
      );
      assert.ok(jumpy.clockJumps > 50, `the wall clock jumped (${jumpy.clockJumps} times)`);
      assert.ok(jumpy.acquisitions > 5, `the jumping worker got locks (${jumpy.acquisitions})`);
      for (const s of o.summaries) {
        // validity is TTL minus the drift margin, minus the request's own round trip
        assert.ok(s.remainingAtAcquire.max <= VALID, `${s.proc}: remainingMs ${s.remainingAtAcquire.max} <= ${VALID}`);
        assert.ok(s.remainingAtAcquire.min > VALID - 250, `${s.proc}: remainingMs ${s.remainingAtAcquire.min} close to ${VALID}`);
        // a hold that overruns is declared lost when validity runs out, by the monotonic clock: not hours early or late
        if (s.expiryLateness.count > 0) {
          assert.ok(s.expiryLateness.min >= 0, `${s.proc}: loss not declared before validity ran out (${s.expiryLateness.min} ms)`);
          assert.ok(s.expiryLateness.max < 250, `${s.proc}: loss declared on time (${s.expiryLateness.max} ms late)`);
        }
      }
      // wall time never makes a lease end early: no lease was found gone while still valid
      assert.equal(o.result.stats.takenWhileValid, 0, 'no lease found gone while still valid');
      assert.ok(jumpy.expiryLateness.count > 0, 'the jumping worker overran a lease at least once');
      const normalAcq = normal.reduce((a, s) => a + s.acquisitions, 0) / normal.length;
      assert.ok(jumpy.acquisitions > normalAcq / 3, `similar share of the locks: ${jumpy.acquisitions} vs ${normalAcq.toFixed(0)} on average`);
    });
  }
});
