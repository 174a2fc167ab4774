/**
 * The server TTL margin (src/store/ttl.ts), pinned after the fault suite found lock items
 * expiring early: memcached's clock can advance by 2 s in one tick, so an item stored with T
 * lives more than T-2 s (not T-1). The server TTL must leave the client's validity covered, and
 * never exceed 30 days (memcached would read it as an absolute time). Repro of the memcached
 * behaviour: test/faults/repro/memcached-clock-step.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import fc from 'fast-check';

import { MAX_TTL_MS, MIN_TTL_MS } from '../../src/index.js';
import { driftMs, serverTtlSeconds } from '../../src/store/ttl.js';

describe('server TTL margin', () => {
  test('ttl margin - a lease is stored two whole seconds beyond its rounded-up TTL', () => {
    assert.equal(serverTtlSeconds(1_000), 3);
    assert.equal(serverTtlSeconds(1_001), 4);
    assert.equal(serverTtlSeconds(30_000), 32);
    assert.equal(serverTtlSeconds(60_000), 62);
  });

  test('ttl margin - capped at 30 days, the longest TTL memcached reads as relative', () => {
    assert.equal(serverTtlSeconds(MAX_TTL_MS), 2_592_000);
    assert.equal(serverTtlSeconds(MAX_TTL_MS - 1_000), 2_592_000);
  });

  test('ttl margin - for every TTL, the shortest item life (T-2 s) covers the validity the client claims', () => {
    fc.assert(
      fc.property(fc.integer({ min: MIN_TTL_MS, max: MAX_TTL_MS }), (ttlMs) => {
        const t = serverTtlSeconds(ttlMs);
        assert.ok(t <= 2_592_000);
        const shortestLifeMs = (t - 2) * 1000;
        const validityMs = ttlMs - driftMs(ttlMs);
        assert.ok(shortestLifeMs >= validityMs, `ttl ${ttlMs}: item may live ${shortestLifeMs} ms, validity ${validityMs} ms`);
      }),
      { numRuns: 2_000 },
    );
  });
});
