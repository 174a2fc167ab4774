/**
 * The fault suite's safety checker (test/faults/checker.ts) on synthetic histories: each of its
 * four checks passes a clean history and flags the history that breaks it. No I/O. The checker
 * catching a real broken lock on a real memcached is in test/integration/faults-quick.test.ts
 * and test/faults/checker.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkHistory, summarize, type CheckName } from '../faults/checker.js';
import type { HistoryEvent } from '../faults/recorder.js';

const K = 'k';

function acquire(holder: string, t: number, validFor: number, fence: number | bigint, key = K): HistoryEvent {
  return { type: 'acquire', key, holder, proc: holder.split(':')[0]!, fence: String(fence), t, validUntil: t + validFor };
}
function release(holder: string, t: number, deleted = true, key = K): HistoryEvent {
  return { type: 'release', key, holder, t, deleted };
}
function lost(holder: string, t: number, reason = 'expired', key = K): HistoryEvent {
  return { type: 'lost', key, holder, t, reason };
}
function renew(holder: string, t: number, validFor: number, key = K): HistoryEvent {
  return { type: 'renew', key, holder, t, validUntil: t + validFor };
}
function write(holder: string, seq: number, fence: number, accepted: boolean, key = K): HistoryEvent {
  return { type: 'write', key, holder, fence: String(fence), t: seq, accepted, seq };
}

function checks(events: HistoryEvent[], toleranceMs?: number): CheckName[] {
  return checkHistory(events, { toleranceMs }).violations.map((v) => v.check);
}

describe('safety checker', () => {
  test('checker - a clean history of successive holders has no violation', () => {
    const h = [
      acquire('a:1', 0, 1000, 10),
      write('a:1', 1, 10, true),
      release('a:1', 50),
      acquire('b:1', 51, 1000, 11),
      write('b:1', 2, 11, true),
      release('b:1', 80),
      acquire('a:2', 2000, 1000, 12),
      lost('a:2', 3001),
      release('a:2', 3005, false),
    ];
    const r = checkHistory(h);
    assert.deepEqual(r.violations, []);
    assert.equal(r.stats.leases, 3);
    assert.equal(r.stats.released, 2);
    assert.deepEqual(r.stats.lostByReason, { expired: 1 });
    assert.match(summarize(r), /overlap=0 fence-order=0 unsignalled-loss=0 stale-write=0 malformed=0/);
  });

  test('checker - events may come in any order (merged from several processes)', () => {
    const h = [release('b:1', 80), acquire('b:1', 51, 1000, 11), release('a:1', 50), acquire('a:1', 0, 1000, 10)];
    assert.deepEqual(checks(h), []);
  });

  describe('(a) overlap', () => {
    test('checker - a holder granted while another is still valid and unreleased is an overlap', () => {
      const h = [acquire('a:1', 0, 1000, 10), acquire('b:1', 500, 1000, 11), release('a:1', 700), release('b:1', 900)];
      const r = checkHistory(h);
      assert.deepEqual(
        r.violations.map((v) => [v.check, v.holders]),
        [['overlap', ['a:1', 'b:1']]],
      );
      assert.match(r.violations[0]!.message, /200\.000 ms of overlap/);
    });

    test('checker - validity that ran out ends the lease even when the loss is noticed late', () => {
      // a was paused past its TTL: it learns of the loss at 5000, but its validity ended at 1000
      const h = [acquire('a:1', 0, 1000, 10), acquire('b:1', 1500, 1000, 11), release('b:1', 1600), lost('a:1', 5000), release('a:1', 5001, false)];
      assert.deepEqual(checks(h), []);
    });

    test('checker - the loss signal ends the lease before its validity does', () => {
      const h = [acquire('a:1', 0, 1000, 10), lost('a:1', 100, 'disconnected'), acquire('b:1', 150, 1000, 11), release('b:1', 200), release('a:1', 300, false)];
      assert.deepEqual(checks(h), []);
    });

    test('checker - a renewal extends validity: a grant inside the extension overlaps', () => {
      const base = [acquire('a:1', 0, 1000, 10), renew('a:1', 400, 1000), acquire('b:1', 1200, 1000, 11), release('b:1', 1300)];
      assert.deepEqual(checks([...base, release('a:1', 1350)]), ['overlap']);
      // without the renewal, a's validity ended at 1000: no overlap
      assert.deepEqual(checks([acquire('a:1', 0, 1000, 10), acquire('b:1', 1200, 1000, 11), release('b:1', 1300), lost('a:1', 1350), release('a:1', 1350, false)]), []);
    });

    test('checker - a renewal after validity ran out opens a new segment, not a backdated one', () => {
      // a's validity ends at 1000; b holds 1100-1200; a's late renewal at 1500 is valid from 1500 only
      const gap = [acquire('a:1', 0, 1000, 10), acquire('b:1', 1100, 1000, 11), release('b:1', 1200), renew('a:1', 1500, 1000), release('a:1', 1600)];
      assert.deepEqual(checks(gap), []);
      // but if b still holds at 1500, the renewed segment overlaps it
      const clash = [acquire('a:1', 0, 1000, 10), acquire('b:1', 1100, 1000, 11), renew('a:1', 1500, 1000), release('b:1', 1700), release('a:1', 1800)];
      assert.deepEqual(checks(clash), ['overlap']);
    });

    test('checker - a crash ends the crashed process leases', () => {
      const h: HistoryEvent[] = [acquire('a:1', 0, 1000, 10), { type: 'crash', proc: 'a', t: 100 }, acquire('b:1', 150, 1000, 11), release('b:1', 200)];
      const r = checkHistory(h);
      assert.deepEqual(r.violations, []);
      assert.equal(r.stats.crashed, 1);
    });

    test('checker - different keys never overlap', () => {
      assert.deepEqual(checks([acquire('a:1', 0, 1000, 10, 'x'), acquire('b:1', 10, 1000, 11, 'y'), release('a:1', 50, true, 'x'), release('b:1', 60, true, 'y')]), []);
    });

    test('checker - toleranceMs forgives tiny overlaps only', () => {
      const h = [acquire('a:1', 0, 1000, 10), release('a:1', 100.0004), acquire('b:1', 100, 1000, 11), release('b:1', 200)];
      assert.deepEqual(checks(h), ['overlap']);
      assert.deepEqual(checks(h, 0.001), []);
    });
  });

  describe('(b) fence order', () => {
    test('checker - a later grant with a lower or equal fence is flagged', () => {
      const lower = [acquire('a:1', 0, 1000, 10), release('a:1', 50), acquire('b:1', 60, 1000, 9), release('b:1', 70)];
      assert.deepEqual(checks(lower), ['fence-order']);
      const equal = [acquire('a:1', 0, 1000, 10), release('a:1', 50), acquire('b:1', 60, 1000, 10), release('b:1', 70)];
      assert.deepEqual(checks(equal), ['fence-order']);
    });

    test('checker - fences compare as big integers (epoch << 64 | cas)', () => {
      const epoch = (e: bigint, cas: bigint): bigint => (e << 64n) | cas;
      const ok = [acquire('a:1', 0, 1000, epoch(100n, 900n)), release('a:1', 50), acquire('b:1', 60, 1000, epoch(101n, 1n)), release('b:1', 70)];
      assert.deepEqual(checks(ok), []);
      const restartSameSecond = [acquire('a:1', 0, 1000, epoch(100n, 900n)), release('a:1', 50), acquire('b:1', 60, 1000, epoch(100n, 1n)), release('b:1', 70)];
      assert.deepEqual(checks(restartSameSecond), ['fence-order']);
    });

    test('checker - a lease handed over already expired is not a grant', () => {
      const h = [
        acquire('a:1', 0, 1000, 10),
        release('a:1', 50),
        acquire('x:1', 60, 0, 5), // never valid: not part of grant order
        lost('x:1', 61),
        release('x:1', 61, false),
        acquire('b:1', 70, 1000, 11),
        release('b:1', 80),
      ];
      const r = checkHistory(h);
      assert.deepEqual(r.violations, []);
      assert.equal(r.stats.neverValid, 1);
    });
  });

  describe('(c) every loss signalled', () => {
    test('checker - a release that found the lease gone, with no loss signal, is flagged', () => {
      assert.deepEqual(checks([acquire('a:1', 0, 1000, 10), release('a:1', 50, false)]), ['unsignalled-loss']);
      assert.deepEqual(checks([acquire('a:1', 0, 1000, 10), lost('a:1', 40, 'taken'), release('a:1', 50, false)]), []);
    });

    test('checker - a lease that never ended is flagged unless its process crashed', () => {
      assert.deepEqual(checks([acquire('a:1', 0, 1000, 10)]), ['unsignalled-loss']);
      assert.deepEqual(checks([acquire('a:1', 0, 1000, 10), { type: 'crash', proc: 'a', t: 500 }]), []);
    });

    test('checker - counts leases found taken while still valid (the server lost them early)', () => {
      const early = checkHistory([acquire('a:1', 0, 1000, 10), lost('a:1', 400, 'taken'), release('a:1', 410, false)]);
      assert.equal(early.stats.takenWhileValid, 1);
      const late = checkHistory([acquire('a:1', 0, 1000, 10), lost('a:1', 1400, 'taken'), release('a:1', 1410, false)]);
      assert.equal(late.stats.takenWhileValid, 0, 'a slow holder finding its expired item gone');
      const renewed = checkHistory([acquire('a:1', 0, 1000, 10), renew('a:1', 300, 1000), lost('a:1', 1100, 'taken'), release('a:1', 1110, false)]);
      assert.equal(renewed.stats.takenWhileValid, 1);
    });

    test('checker - a rejected release counts as signalled (the caller got the error)', () => {
      assert.deepEqual(checks([acquire('a:1', 0, 1000, 10), { type: 'release', key: K, holder: 'a:1', t: 50, deleted: false, error: 'ERR_REQUEST_TIMEOUT' }]), []);
    });
  });

  describe('(d) stale writes', () => {
    test('checker - the resource accepting an older lease after a newer one wrote is flagged', () => {
      const base = [acquire('a:1', 0, 1000, 10), release('a:1', 50), acquire('b:1', 60, 1000, 11), release('b:1', 90)];
      assert.deepEqual(checks([...base, write('a:1', 1, 10, true), write('b:1', 2, 11, true), write('a:1', 3, 10, false)]), []);
      assert.deepEqual(checks([...base, write('a:1', 1, 10, true), write('b:1', 2, 11, true), write('a:1', 3, 10, true)]), ['stale-write']);
    });

    test('checker - staleness follows grant order, not fences: wrong fences let a stale write through', () => {
      // b was granted after a but got a lower fence (e.g. a server restart in the same second):
      // a fence-checking resource then accepts a's late write over b's
      const h = [
        acquire('a:1', 0, 1000, 500),
        acquire('b:1', 1500, 1000, 3),
        write('b:1', 1, 3, true),
        write('a:1', 2, 500, true),
        lost('a:1', 1600, 'disconnected'),
        release('a:1', 1700, false),
        release('b:1', 1800),
      ];
      assert.deepEqual(checks(h).sort(), ['fence-order', 'stale-write']);
    });
  });

  test('checker - malformed histories are reported, not ignored', () => {
    assert.deepEqual(checks([release('ghost:1', 10)]), ['malformed']);
    assert.deepEqual(checks([acquire('a:1', 0, 1000, 10), acquire('a:1', 5, 1000, 11), release('a:1', 20)]), ['malformed']);
    assert.deepEqual(checks([acquire('a:1', 0, 1000, 10), write('a:1', 1, 99, true), release('a:1', 20)]), ['malformed']);
  });
});
