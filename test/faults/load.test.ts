/**
 * Load: thousands of concurrent holders and waiters across 4 processes on one memcached, on a
 * few hot keys, bounded by count and time. Most callers wait (and many give up after their
 * wait bound); every grant must still be exclusive and fenced in order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemcachedServer } from '../helpers/memcached-server.js';
import { assertSafe, FaultRun, scenarioSeeds, total } from './harness.js';

const FILE = 'test/faults/load.test.ts';
let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M', '-c', '4096'] });
});
after(async () => {
  await server?.stop();
});

describe('faults - load', () => {
  for (const seed of scenarioSeeds(1)) {
    test(`load - 4 processes x 250 concurrent callers on 16 keys: zero violations (seed ${seed})`, async () => {
      const run = await FaultRun.start({
        scenario: 'load',
        file: FILE,
        seed,
        server,
        workers: 4,
        keys: 16,
        worker: {
          durationMs: 25_000,
          concurrency: 250,
          maxAcquisitions: 2_000,
          ttlMs: 5_000,
          waitMs: 2_000,
          holdMs: [0, 3],
          renew: 'none',
          overrunChance: 0,
          writes: 1,
          requestTimeoutMs: 5_000,
          connectTimeoutMs: 5_000,
        },
      });
      run.fault('1000 concurrent callers (4 processes x 250) on 16 keys');
      run.go();
      const o = await run.finish({ timeoutMs: 60_000 });
      assertSafe(o);
      const acquisitions = total(o, (s) => s.acquisitions);
      const timeouts = total(o, (s) => s.acquireErrors.ERR_LOCK_TIMEOUT ?? 0);
      console.log(`[faults] load seed=${seed}: ${acquisitions} acquisitions, ${timeouts} waits timed out, ${o.result.stats.writesAccepted} fenced writes accepted`);
      assert.ok(acquisitions >= 4_000, `thousands of grants (${acquisitions})`);
      assert.equal(o.result.stats.leases, acquisitions);
    });
  }
});
