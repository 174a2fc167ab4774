/**
 * The checker can fail: deliberately broken locks (./broken-locks.ts), run by several
 * concurrent clients against a real memcached, produce histories the checker flags, each for
 * the property the lock breaks. The checker's unit tests on synthetic histories run here too
 * (they live in test/unit/safety-checker.test.ts so that `npm test` runs them).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemcachedServer } from '../helpers/memcached-server.js';
import { runBrokenLock, type BrokenKind } from './broken-locks.js';
import { checkHistory, summarize, type CheckName } from './checker.js';
import { scenarioSeeds } from './harness.js';
import '../unit/safety-checker.test.js';

let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server?.stop();
});

const CASES: { kind: BrokenKind; naiveResource: boolean; durationMs: number; expect: CheckName[] }[] = [
  // no owner check on acquire: concurrent "winners" overlap
  { kind: 'get-then-set', naiveResource: false, durationMs: 1000, expect: ['overlap'] },
  // ... and a resource that does not check fences takes their interleaved writes
  { kind: 'get-then-set', naiveResource: true, durationMs: 1000, expect: ['overlap', 'stale-write'] },
  // no owner check on release: an overrunning holder deletes its successor's lock
  { kind: 'blind-delete', naiveResource: true, durationMs: 4500, expect: ['overlap', 'stale-write'] },
  // a correct lock with client-made fencing tokens: the tokens disagree with grant order
  { kind: 'local-fence', naiveResource: false, durationMs: 800, expect: ['fence-order'] },
];

describe('faults - the checker catches broken locks', () => {
  for (const seed of scenarioSeeds(1)) {
    for (const c of CASES) {
      test(`checker - ${c.kind}${c.naiveResource ? ' with a resource that ignores fences' : ''} is flagged: ${c.expect.join(', ')} (seed ${seed})`, async () => {
        const history = await runBrokenLock({ ...c, address: { host: server.host, port: server.port }, seed });
        const r = checkHistory(history);
        console.log(`[faults] broken ${c.kind}${c.naiveResource ? ' (naive resource)' : ''} seed=${seed}: ${summarize(r)}`);
        for (const check of c.expect) assert.ok(r.counts[check] > 0, `expected ${check} violations, got ${summarize(r)}`);
      });
    }
  }
});
