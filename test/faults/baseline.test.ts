/**
 * Baseline: the same mixed workload as the fault scenarios (3 processes, short leases, manual
 * and automatic renewal, overruns, fenced writes) with no fault at all. Every lease must end
 * by release or by its own expiry: none may be found gone while still valid. (A holder whose
 * process was too slow to notice its own expiry may find the item gone after validity ran out;
 * that is reported as `taken` and is fine.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemcachedServer } from '../helpers/memcached-server.js';
import { assertSafe, FaultRun, scenarioSeeds } from './harness.js';

const FILE = 'test/faults/baseline.test.ts';
let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server?.stop();
});

describe('faults - baseline', () => {
  for (const seed of scenarioSeeds(2)) {
    test(`baseline - no fault: zero violations, no lease found gone while valid (seed ${seed})`, async () => {
      const run = await FaultRun.start({ scenario: 'baseline', file: FILE, seed, server, workers: 3, worker: { durationMs: 5_000, overrunChance: 0.1 } });
      run.go();
      const o = await run.finish();
      assertSafe(o);
      assert.equal(o.result.stats.takenWhileValid, 0, 'no lease found gone while still valid on a healthy server');
      assert.ok(o.result.stats.leases > 20);
    });
  }
});
