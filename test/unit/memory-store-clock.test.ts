/**
 * The memory store on an injected clock: expiry happens exactly at the TTL, handles follow the
 * clock, and the fault injections (simulateRestart, evict) reach the holders. No sleeping.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { InvalidArgumentError, LockLostError, Locks, MemoryStore, type LockHandle, type Lease } from '../../src/index.js';
import { FakeClock, uniqueKey } from '../helpers/util.js';

const OWNER = { label: 'clock-test' };
const opened: Locks[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((l) => l.close()));
});

function setup(): { clock: FakeClock; store: MemoryStore; locks: Locks } {
  const clock = new FakeClock(5_000);
  const store = new MemoryStore({ clock });
  const locks = new Locks({ store });
  opened.push(locks);
  return { clock, store, locks };
}

async function mustCreate(store: MemoryStore, key: string, ttlMs: number): Promise<Lease> {
  const r = await store.create(key, ttlMs, OWNER);
  assert.ok(r.acquired);
  return r.lease;
}

function recordEvents(locks: Locks): string[] {
  const events: string[] = [];
  locks.on('lost', (key: string, err: LockLostError) => events.push(`lost ${key} ${err.reason}`));
  locks.on('released', (key: string, _h: LockHandle, deleted: boolean) => events.push(`released ${key} ${deleted}`));
  return events;
}

describe('memory store clock', () => {
  test('memory store clock - a lease expires exactly at its TTL', async () => {
    const { clock, store } = setup();
    const key = uniqueKey('exact');
    const lease = await mustCreate(store, key, 1_000);
    assert.equal(lease.validUntil, clock.now() + 1_000, 'no drift margin in process');

    clock.advance(999);
    assert.equal((await store.inspect(key))?.remainingMs, 1);
    const held = await store.create(key, 1_000, OWNER, { wantRemaining: true });
    assert.deepEqual(held, { acquired: false, remainingMs: 1 });
    assert.equal(store.size, 1);

    clock.advance(1);
    assert.equal(await store.inspect(key), null);
    assert.equal(store.size, 0);
    const next = await mustCreate(store, key, 1_000);
    assert.ok(next.fence > lease.fence);
    assert.equal(await store.delete(lease), false);
    assert.equal(await store.extend(lease, 1_000), null);
    assert.equal((await store.inspect(key))?.token, next.token);
  });

  test('memory store clock - extend moves the expiry to exactly ttl from now', async () => {
    const { clock, store } = setup();
    const key = uniqueKey('extend');
    const lease = await mustCreate(store, key, 1_000);
    clock.advance(500);
    const extended = await store.extend(lease, 2_000);
    assert.equal(extended?.validUntil, clock.now() + 2_000);
    clock.advance(1_999);
    assert.equal((await store.inspect(key))?.remainingMs, 1);
    clock.advance(1);
    assert.equal(await store.inspect(key), null);
  });

  test('memory store clock - handle.isHeld and remainingMs follow the clock; an expired handle cannot extend', async () => {
    const { clock, locks } = setup();
    const events = recordEvents(locks);
    const key = uniqueKey('handle');
    const h = await locks.mutex(key).acquire({ ttlMs: 1_000 });
    assert.equal(h.remainingMs, 1_000);
    assert.equal(h.isHeld, true);

    clock.advance(600);
    assert.equal(h.remainingMs, 400);
    await h.extend();
    assert.equal(h.remainingMs, 1_000, 'extended to the TTL from now');
    clock.advance(999);
    assert.equal(h.remainingMs, 1);
    assert.equal(h.isHeld, true);

    clock.advance(1);
    assert.equal(h.isHeld, false);
    assert.equal(h.remainingMs, 0);
    await assert.rejects(h.extend(), (err: unknown) => err instanceof LockLostError && err.reason === 'expired' && err.key === key);
    assert.equal(h.state, 'lost');
    assert.ok(h.signal.aborted);
    assert.equal((h.signal.reason as LockLostError).reason, 'expired');
    assert.equal(await h.release(), false);
    assert.deepEqual(events, [`lost ${key} expired`, `released ${key} false`]);

    const next = await locks.mutex(key).tryAcquire();
    assert.ok(next, 'free for the next holder');
    assert.ok(next.fencingToken > h.fencingToken);
    await next.release();
  });

  test('memory store clock - simulateRestart marks every held handle lost', async () => {
    const { store, locks } = setup();
    const events = recordEvents(locks);
    const k1 = uniqueKey('restart-1');
    const k2 = uniqueKey('restart-2');
    const h1 = await locks.mutex(k1).acquire();
    const h2 = await locks.mutex(k2).acquire();
    const heard: string[] = [];
    h1.onLost((err) => heard.push(err.reason));
    const aborted = h2.signal;

    store.simulateRestart();
    for (const h of [h1, h2]) {
      assert.equal(h.state, 'lost');
      assert.equal(h.isHeld, false);
      assert.ok(h.signal.aborted);
      assert.ok(h.signal.reason instanceof LockLostError);
      assert.equal((h.signal.reason as LockLostError).reason, 'server-restarted');
      assert.throws(() => h.throwIfLost(), LockLostError);
    }
    assert.ok(aborted.aborted, 'a signal taken before the loss aborts too');
    assert.deepEqual(heard, ['server-restarted']);
    assert.deepEqual(events.sort(), [`lost ${k1} server-restarted`, `lost ${k2} server-restarted`].sort());
    // a listener added after the loss hears of it at once
    const late = await new Promise<string>((resolve) => h2.onLost((err) => resolve(err.reason)));
    assert.equal(late, 'server-restarted');

    assert.equal(await h1.release(), false);
    const again = await locks.mutex(k1).tryAcquire();
    assert.ok(again);
    assert.ok(again.fencingToken > h2.fencingToken, 'fences keep increasing across a simulated restart');
    await again.release();
  });

  test('memory store clock - evict, then release returns false and signals the loss', async () => {
    const { store, locks } = setup();
    const events = recordEvents(locks);
    const key = uniqueKey('evict');
    const h = await locks.mutex(key).acquire();
    const signal = h.signal;
    assert.equal(store.evict(key), true);
    assert.equal(store.evict(key), false);
    // an eviction tells nobody: the handle still believes it holds the lock...
    assert.equal(h.isHeld, true);
    assert.equal(signal.aborted, false);
    // ...until it talks to the store
    assert.equal(await h.release(), false);
    assert.ok(signal.aborted);
    assert.equal((signal.reason as LockLostError).reason, 'taken');
    assert.equal(h.lostError?.reason, 'taken');
    assert.deepEqual(events, [`lost ${key} taken`, `released ${key} false`]);
  });

  test('memory store clock - evict, then extend throws LockLostError (taken)', async () => {
    const { store, locks } = setup();
    const key = uniqueKey('evict-extend');
    const h = await locks.mutex(key).acquire();
    store.evict(key);
    await assert.rejects(h.extend(), (err: unknown) => err instanceof LockLostError && err.reason === 'taken');
    assert.equal(h.state, 'lost');
    assert.equal(await h.release(), false);
  });

  test('memory store clock - a waiter gets the lock when its holder is dropped by a restart', async () => {
    const { store, locks } = setup();
    const key = uniqueKey('restart-wake');
    const holder = await locks.mutex(key).acquire();
    const other = new Locks({ store });
    opened.push(other);
    const waiting = other.mutex(key).acquire({ waitMs: 60_000 });
    store.simulateRestart();
    const h = await waiting;
    assert.ok(h.fencingToken > holder.fencingToken);
    assert.equal(holder.state, 'lost');
    await h.release();
  });

  test('memory store clock - the clock option must have a now() method', () => {
    assert.throws(() => new MemoryStore({ clock: {} as never }), InvalidArgumentError);
    assert.throws(() => new MemoryStore({ clock: 42 as never }), /clock must be an object with a now\(\) method, got 42/);
  });
});
