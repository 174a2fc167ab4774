/**
 * The reentrant lock: the owner is the async context (or an explicit LockOwner). Logic on the
 * memory store; one test against a real memcached.
 */
import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';

import { LockLostError, LockOwner, Locks, MemoryStore, type ReentrantHandle } from '../../src/index.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { sleep, uniqueKey, within } from '../helpers/util.js';

const SOON_MS = 10_000;
const opened: Locks[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((l) => l.close()));
});

function memoryLocks(): { locks: Locks; store: MemoryStore } {
  const store = new MemoryStore();
  const locks = new Locks({ store });
  opened.push(locks);
  return { locks, store };
}

/** A promise and its resolve function. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('reentrant', () => {
  test('reentrant - nested withLock in one async context re-enters while a parallel context waits', async () => {
    const { locks } = memoryLocks();
    const key = uniqueKey('nested');
    const lock = locks.reentrant(key);
    const events: string[] = [];
    const outerHolds = gate();
    const releaseOuter = gate();

    const outer = lock.withLock(async (h) => {
      events.push('outer in');
      assert.equal(h.holdCount, 1);
      const innerResult = await lock.withLock(async (inner) => {
        events.push('inner in');
        assert.equal(inner.holdCount, 2);
        assert.equal(inner.fencingToken, h.fencingToken, 'one lease for both levels');
        // deeper still, through a plain acquire in the same context
        const third = await lock.acquire();
        assert.equal(third.holdCount, 3);
        assert.equal(await third.release(), true);
        return 'inner';
      });
      assert.equal(innerResult, 'inner');
      assert.equal(h.holdCount, 1, 'back to one level');
      outerHolds.open();
      await releaseOuter.promise;
      events.push('outer out');
    });

    // a sibling started outside the hold: it is another owner and must wait
    const sibling = (async () => {
      await outerHolds.promise;
      events.push('sibling waits');
      return lock.withLock(async (h) => {
        events.push('sibling in');
        assert.equal(h.holdCount, 1);
      });
    })();

    await outerHolds.promise;
    await sleep(50);
    assert.deepEqual(events, ['outer in', 'inner in', 'sibling waits'], 'the sibling has not entered');
    releaseOuter.open();
    await within(Promise.all([outer, sibling]), SOON_MS, 'outer and sibling');
    assert.deepEqual(events, ['outer in', 'inner in', 'sibling waits', 'outer out', 'sibling in']);
    assert.equal(await locks.inspect(key), null);
  });

  test('reentrant - parallel branches inside one hold re-enter: they are inside it', async () => {
    const { locks } = memoryLocks();
    const key = uniqueKey('branches');
    const lock = locks.reentrant(key);
    const counts: number[] = [];
    await lock.withLock(async (outer) => {
      const both = gate();
      let entered = 0;
      await within(
        Promise.all(
          [0, 1].map(() =>
            lock.withLock(async (h) => {
              counts.push(h.holdCount);
              entered++;
              if (entered === 2) both.open();
              // both branches are inside at the same time
              await both.promise;
              assert.equal(h.fencingToken, outer.fencingToken);
            }),
          ),
        ),
        SOON_MS,
        'both branches',
      );
      assert.equal(outer.holdCount, 1);
    });
    // holdCount is live: both branches saw the outer level plus both of theirs open at once
    assert.deepEqual(counts, [3, 3]);
    assert.equal(await locks.inspect(key), null);
  });

  test('reentrant - a hold is not visible to code that started before it', async () => {
    const { locks } = memoryLocks();
    const key = uniqueKey('before');
    const lock = locks.reentrant(key);
    // a branch of the same parent, started before the hold exists, is not inside it
    const held = gate();
    const done = gate();
    const holder = lock.withLock(async () => {
      held.open();
      await done.promise;
    });
    await held.promise;
    assert.equal(await lock.tryAcquire(), null, 'the parent of the hold does not re-enter');
    done.open();
    await holder;
  });

  test('reentrant - handle.run makes a hold taken by acquire() visible to the code it runs', async () => {
    const { locks } = memoryLocks();
    const key = uniqueKey('run');
    const lock = locks.reentrant(key);
    const h = await lock.acquire();
    assert.equal(await lock.tryAcquire(), null, 'outside run(), the caller does not re-enter');
    const inner = await h.run(() => lock.tryAcquire());
    assert.ok(inner);
    assert.equal(inner.holdCount, 2);
    assert.equal(h.run(() => 'value'), 'value');
    await inner.release();
    await h.release();
    assert.equal(await locks.inspect(key), null);
  });

  test('reentrant - an explicit LockOwner re-enters across async contexts', async () => {
    const { locks } = memoryLocks();
    const key = uniqueKey('owner');
    const lock = locks.reentrant(key);
    const owner = locks.createOwner();
    assert.ok(owner instanceof LockOwner);
    const h1 = await lock.acquire({ owner });
    // another context (a timer callback) with the same owner re-enters
    const h2 = await new Promise<ReentrantHandle>((resolve, reject) => {
      setImmediate(() => lock.acquire({ owner }).then(resolve, reject));
    });
    assert.equal(h2.holdCount, 2);
    assert.equal(h2.fencingToken, h1.fencingToken);
    // without the owner, or with another one, it is someone else's lock
    assert.equal(await lock.tryAcquire(), null);
    assert.equal(await lock.tryAcquire({ owner: locks.createOwner() }), null);
    await assert.rejects(lock.acquire({ owner: locks.createOwner(), waitMs: 50 }), { code: 'ERR_LOCK_TIMEOUT' });

    assert.equal(await h1.release(), true);
    assert.ok(await locks.inspect(key), 'still held by the second level');
    assert.equal(await h2.release(), true);
    assert.equal(await locks.inspect(key), null);
    // the owner's hold is gone: the next acquisition is a new lease
    const h3 = await lock.acquire({ owner });
    assert.equal(h3.holdCount, 1);
    assert.ok(h3.fencingToken > h1.fencingToken);
    await h3.release();
  });

  test('reentrant - one owner acquiring twice at once: the second waits for the first, then re-enters', async () => {
    const { locks } = memoryLocks();
    const key = uniqueKey('owner-concurrent');
    const lock = locks.reentrant(key);
    const owner = locks.createOwner();
    const [h1, h2] = await Promise.all([lock.acquire({ owner, waitMs: 1000 }), lock.acquire({ owner, waitMs: 1000 })]);
    assert.equal(h1.fencingToken, h2.fencingToken, 'one lease');
    assert.equal(h2.holdCount, 2);
    await h1.release();
    assert.ok(await locks.inspect(key), 'held until the last level goes');
    await h2.release();
    assert.equal(await locks.inspect(key), null);
    // when the first acquisition fails, the second tries on its own
    const other = await locks.mutex(key).acquire();
    const both = await Promise.allSettled([lock.acquire({ owner, waitMs: 30 }), lock.acquire({ owner, waitMs: 30 })]);
    assert.deepEqual(
      both.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'fulfilled')),
      ['ERR_LOCK_TIMEOUT', 'ERR_LOCK_TIMEOUT'],
    );
    await other.release();
  });

  test("reentrant - tryAcquire while the same owner's acquisition is in flight returns null and takes nothing ahead of it", async () => {
    const store = new MemoryStore();
    const a = new Locks({ store });
    opened.push(a);
    const key = uniqueKey('owner-try-in-flight');
    const lock = a.reentrant(key);
    const owner = a.createOwner();
    // another process holds the key, and lets it go without telling this one
    const other = await store.create(key, 60_000, { label: 'another process' });
    assert.ok(other.acquired);
    const acquiring = lock.acquire({ owner, waitMs: SOON_MS });
    await sleep(20);
    assert.equal(await store.delete(other.lease), true);
    // the lock is free in the store, and the owner's acquisition (between two polls) has not taken
    // it yet: an attempt by the try would win and leave that acquisition waiting for its own owner
    assert.equal(await lock.tryAcquire({ owner }), null);
    const held = await within(acquiring, 2000, 'the in-flight acquisition');
    assert.equal(held.holdCount, 1);
    // once it is held, the try re-enters
    const again = await lock.tryAcquire({ owner });
    assert.ok(again);
    assert.equal(again.holdCount, 2);
    assert.equal(again.fencingToken, held.fencingToken);
    await again.release();
    await held.release();
    assert.equal(await a.inspect(key), null);
  });

  test('reentrant - a hold through one factory is not re-entered through another', async () => {
    const store = new MemoryStore();
    const a = new Locks({ store });
    const b = new Locks({ store });
    opened.push(a, b);
    const key = uniqueKey('factories');
    const owner = a.createOwner();
    await a.reentrant(key).withLock(async () => {
      // same key, same store, another factory: another client, so it must wait like one
      await assert.rejects(b.reentrant(key).acquire({ waitMs: 30 }), { code: 'ERR_LOCK_TIMEOUT' });
      assert.equal(await b.reentrant(key).tryAcquire(), null);
      // while the same factory re-enters
      const again = await a.reentrant(key).acquire();
      assert.equal(again.holdCount, 2);
      await again.release();
    });
    const held = await a.reentrant(key).acquire({ owner });
    assert.equal(await b.reentrant(key).tryAcquire({ owner }), null, "an owner's hold is per factory too");
    await held.release();
  });

  test('reentrant - the lease goes with the last level; extra releases are no-ops', async () => {
    const { locks } = memoryLocks();
    const key = uniqueKey('count');
    const lock = locks.reentrant(key);
    const owner = locks.createOwner();
    const levels = [await lock.acquire({ owner }), await lock.acquire({ owner }), await lock.acquire({ owner })];
    assert.equal(levels[0]!.holdCount, 3);
    const token = (await locks.inspect(key))?.token;

    assert.equal(await levels[1]!.release(), true);
    assert.equal(await levels[1]!.release(), false, 'a level releases once');
    assert.equal(levels[0]!.holdCount, 2);
    assert.equal(levels[1]!.isHeld, false, 'a released level is not held');
    assert.equal(levels[1]!.remainingMs, 0);
    assert.equal(levels[0]!.isHeld, true);
    await assert.rejects(levels[1]!.extend(), { code: 'ERR_LOCK_NOT_HELD' });
    await levels[0]!.extend();
    assert.equal((await locks.inspect(key))?.token, token, 'still the same lease');

    assert.equal(await levels[0]!.release(), true);
    assert.equal((await locks.inspect(key))?.token, token, 'one level left: still held');
    await levels[2]![Symbol.asyncDispose]();
    assert.equal(await locks.inspect(key), null, 'the last level released the lease');
    assert.equal(await levels[2]!.release(), false);
  });

  test('reentrant - await using releases one level', async () => {
    const { locks } = memoryLocks();
    const key = uniqueKey('using');
    const lock = locks.reentrant(key);
    const owner = locks.createOwner();
    const outer = await lock.acquire({ owner });
    {
      await using inner = await lock.acquire({ owner });
      assert.equal(inner.holdCount, 2);
    }
    assert.equal(outer.holdCount, 1);
    assert.ok(await locks.inspect(key));
    await outer.release();
    assert.equal(await locks.inspect(key), null);
  });

  test('reentrant - re-entering a lost hold throws LockLostError', async () => {
    const { locks, store } = memoryLocks();
    const key = uniqueKey('lost');
    const lock = locks.reentrant(key);
    await assert.rejects(
      lock.withLock(async (h) => {
        store.simulateRestart();
        assert.equal(h.signal.aborted, true);
        assert.equal(h.isHeld, false);
        await lock.withLock(() => assert.fail('must not re-enter a lost hold'));
      }),
      (err: unknown) => err instanceof LockLostError && err.reason === 'server-restarted',
    );
    assert.equal(await locks.inspect(key), null);

    // through an explicit owner too
    const owner = locks.createOwner();
    const h = await lock.acquire({ owner });
    store.evict(key);
    assert.equal(await h.extend().catch((err: unknown) => err instanceof LockLostError), true, 'extend finds it gone');
    await assert.rejects(lock.acquire({ owner }), LockLostError);
    await assert.rejects(lock.tryAcquire({ owner }), LockLostError);
    assert.equal(await h.release(), false);
    // released: the owner starts afresh
    const again = await lock.acquire({ owner });
    assert.equal(again.holdCount, 1);
    await again.release();
  });

  test('reentrant - withLock renews by default; the factory defaults can turn it off', async () => {
    const store = new MemoryStore();
    const renewing = new Locks({ store });
    const quiet = new Locks({ store, defaults: { autoRenew: false } });
    opened.push(renewing, quiet);
    for (const [locks, expectRenewal] of [
      [renewing, true],
      [quiet, false],
    ] as const) {
      const key = uniqueKey('renew');
      await locks.reentrant(key).withLock(
        async (h) => {
          const first = h.lease;
          // renewAt 0.34 of 1000 ms: renewed after ~340 ms
          await sleep(600);
          assert.equal(h.lease !== first, expectRenewal, `renewed: ${expectRenewal}`);
        },
        { ttlMs: 1_000 },
      );
    }
  });
});

describe('reentrant on memcached', () => {
  let server: MemcachedServer | undefined;
  after(async () => {
    await server?.stop();
  });

  test('reentrant - memcached: nested levels share one lease; another client waits for the last release', async () => {
    server = await MemcachedServer.start({ args: ['-M'] });
    const a = new Locks({ servers: server.address, prefix: 'reent:' });
    const b = new Locks({ servers: server.address, prefix: 'reent:' });
    opened.push(a, b);
    const key = uniqueKey('mc');
    const lock = a.reentrant(key);
    let waited: Promise<void> | undefined;
    await lock.withLock(async (outer) => {
      const info = await a.inspect(key);
      assert.equal(info?.token, outer.lease?.token);
      await lock.withLock(async (inner) => {
        assert.equal(inner.holdCount, 2);
        assert.equal(inner.lease?.token, info?.token, 'no second lease');
      });
      assert.equal((await a.inspect(key))?.token, info?.token, 'the inner release kept the lease');
      assert.equal(await b.mutex(key).tryAcquire(), null);
      waited = b.withLock(key, async (h) => {
        assert.ok(h.fencingToken > outer.fencingToken);
      });
      await sleep(50);
    });
    await within(waited!, SOON_MS, 'the other client after the release');
    assert.equal(await a.inspect(key), null);
  });
});
