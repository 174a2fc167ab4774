/**
 * Mutex, scoped use and the factory against a real memcached: waiting, timeouts, cancellation,
 * expiry, renewal, restarts, an unreachable server, fencing, eviction warnings and argument
 * checks.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';

import {
  type Connection,
  ConnectionError,
  InvalidArgumentError,
  LockAbortedError,
  LockLostError,
  LockTimeoutError,
  LockUnavailableError,
  Locks,
  MemcachedStore,
  MemoryStore,
  type CreateOptions,
  type CreateResult,
  type LockHandle,
  type LocksOptions,
  type OwnerInfo,
} from '../../src/index.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { eventually, settle, sleep, uniqueKey, within } from '../helpers/util.js';

/** Hang guard for "soon": generous, never a performance assertion. */
const SOON_MS = 10_000;
const LOW_64 = (1n << 64n) - 1n;

let server: MemcachedServer;
const opened: Locks[] = [];
const servers: MemcachedServer[] = [];

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((l) => l.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});
after(async () => {
  await server.stop();
});

/** A factory on the shared server (or `options.servers`), closed after the test. */
function open(options: LocksOptions = {}): Locks {
  const locks = new Locks({ servers: server.address, prefix: 'it:', ...options });
  opened.push(locks);
  return locks;
}

/** A server of this test only, stopped after it. */
async function ownServer(args: string[] = ['-M']): Promise<MemcachedServer> {
  const s = await MemcachedServer.start({ args });
  servers.push(s);
  return s;
}

function connectionOf(locks: Locks) {
  return (locks.store as MemcachedStore).client.connections[0]!;
}

/** A TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Resolves once `conn` has tried to reconnect and failed (it went connecting, then down). */
function failedReconnect(conn: Connection): Promise<void> {
  return new Promise<void>((resolve) => {
    let retrying = false;
    conn.on('state', (state: string) => {
      if (state === 'connecting') retrying = true;
      else if (state === 'down' && retrying) resolve();
    });
  });
}

function lostEvent(locks: Locks): Promise<{ key: string; error: LockLostError; handle: LockHandle }> {
  return new Promise((resolve) => {
    locks.once('lost', (key: string, error: LockLostError, handle: LockHandle) => resolve({ key, error, handle }));
  });
}

describe('mutex', () => {
  test('mutex - acquire, tryAcquire and release', async () => {
    const a = open();
    const b = open();
    const key = uniqueKey('basic');
    const m = a.mutex(key);
    assert.equal(m.key, key);
    const h = await m.acquire();
    assert.equal(h.key, key);
    assert.equal(h.locked, true);
    assert.equal(h.isHeld, true);
    assert.equal(h.state, 'held');
    assert.ok(h.remainingMs > 0);
    assert.ok(h.fencingToken > 0n);
    assert.equal(h.signal.aborted, false);

    assert.equal(await b.mutex(key).tryAcquire(), null, 'another client cannot take it');
    assert.equal(await m.tryAcquire(), null, 'a mutex is not reentrant');
    const info = await m.inspect();
    assert.equal(info?.token, h.lease?.token);
    assert.equal(info?.owner?.pid, process.pid);

    assert.equal(await h.release(), true);
    assert.equal(h.state, 'released');
    assert.equal(h.isHeld, false);
    assert.equal(h.remainingMs, 0);
    assert.equal(await h.release(), false, 'a second release is a no-op');
    assert.equal(h.signal.aborted, false, 'a released handle never reports a loss');
    assert.equal(await a.inspect(key), null);

    const t = await b.mutex(key).tryAcquire();
    assert.ok(t, 'free again');
    assert.ok(t.fencingToken > h.fencingToken);
    assert.equal(await t.release(), true);
  });

  test('mutex - acquired and released events', async () => {
    const a = open();
    const key = uniqueKey('events');
    const events: string[] = [];
    a.on('acquired', (k: string, h: LockHandle) => events.push(`acquired ${k === key} ${h.locked}`));
    a.on('released', (k: string, _h: LockHandle, deleted: boolean) => events.push(`released ${k === key} ${deleted}`));
    await a.withLock(key, () => {});
    assert.deepEqual(events, ['acquired true true', 'released true true']);
  });

  test('mutex - forceRelease removes a holder; the holder then learns it lost the lock', async () => {
    const a = open();
    const b = open();
    const key = uniqueKey('force');
    const h = await a.mutex(key).acquire();
    assert.equal(await b.forceRelease(key), true);
    assert.equal(await b.forceRelease(key), false, 'nothing left to remove');
    assert.equal(await b.inspect(key), null);
    await assert.rejects(h.extend(), (err: unknown) => err instanceof LockLostError && err.reason === 'taken');
    assert.equal(await h.release(), false);
    assert.equal((h.signal.reason as LockLostError).reason, 'taken');
  });

  test('mutex - close releases every held lock; the closed factory refuses new work', async () => {
    const a = open();
    const b = open();
    const k1 = uniqueKey('close-1');
    const k2 = uniqueKey('close-2');
    const h1 = await a.mutex(k1).acquire();
    const h2 = await a.mutex(k2).acquire({ autoRenew: true });
    await a.close();
    assert.equal(h1.state, 'released');
    assert.equal(h2.state, 'released');
    assert.equal(await b.inspect(k1), null);
    assert.equal(await b.inspect(k2), null);
    await assert.rejects(a.mutex(k1).acquire(), { name: 'ClosedError', code: 'ERR_CLOSED' });
    await assert.rejects(a.withLock(k1, () => {}), { code: 'ERR_CLOSED' });
    await a.close();
  });

  test('mutex - close ends waits with ClosedError, never runs them unlocked, and leaves nothing locked', async () => {
    const a = open();
    const b = open();
    const key = uniqueKey('close-wait');
    const held = await b.mutex(key).acquire();
    let ran = false;
    const proceeding = settle(a.withLock(key, () => (ran = true), { waitMs: 5_000, onUnavailable: 'proceed' }));
    const waiting = settle(a.mutex(key).acquire({ waitMs: 5_000 }));
    const serialized = settle(a.serializer({ isConflict: () => false, waitMs: 5_000 }).run(key, () => (ran = true)));
    await sleep(100);
    await a.close();
    for (const outcome of await Promise.all([proceeding, waiting, serialized])) {
      assert.ok(!outcome.ok && (outcome.error as { code?: string }).code === 'ERR_CLOSED', String(outcome.ok || outcome.error));
    }
    assert.equal(ran, false, 'nothing ran unlocked because of the close');
    assert.equal(held.isHeld, true);
    await held.release();
  });

  test('mutex - close while attempts are in flight: each ends held-then-released or ClosedError, nothing stays locked', async () => {
    const b = open();
    for (let i = 0; i < 5; i++) {
      const a = open();
      await a.inspect('warm-up');
      const key = uniqueKey(`close-race-${i}`);
      const attempt = settle(i % 2 ? a.mutex(key).tryAcquire() : a.mutex(key).acquire());
      await a.close();
      const outcome = await attempt;
      if (!outcome.ok) assert.equal((outcome.error as { code?: string }).code, 'ERR_CLOSED', String(outcome.error));
      assert.equal(await b.inspect(key), null, `attempt ${i} left the key locked`);
    }
  });

  test('mutex - extend renews the lease and keeps the fencing token', async () => {
    const a = open();
    const key = uniqueKey('extend');
    const h = await a.mutex(key).acquire({ ttlMs: 2_000 });
    const before = h.lease;
    await h.extend(20_000);
    assert.notEqual(h.lease, before);
    assert.ok(h.remainingMs > 2_000);
    assert.equal(h.lease?.fence, h.fencingToken);
    await h.extend();
    assert.equal(await h.release(), true);
    await assert.rejects(h.extend(), { name: 'LockNotHeldError', code: 'ERR_LOCK_NOT_HELD' });
  });

  test('mutex - acquire waits while another client holds the lock and gets it after the release', async () => {
    const a = open();
    const b = open();
    const key = uniqueKey('wait');
    const held = await b.mutex(key).acquire();
    let got: LockHandle | undefined;
    const waiting = a.mutex(key).acquire({ waitMs: 30_000 }).then((h) => (got = h));
    await sleep(150);
    assert.equal(got, undefined, 'still waiting while the lock is held');
    assert.equal(await held.release(), true);
    const h = await within(waiting, SOON_MS, 'acquire after release');
    assert.ok(h.fencingToken > held.fencingToken);
    assert.equal((await a.inspect(key))?.token, h.lease?.token);
    await h.release();
  });

  test('mutex - a wait whose time is up ends even when the store answers without I/O', async () => {
    // a store that never yields to the event loop (the memory store) and a clock that runs fast:
    // the waiter's time is up before the poller looks at it; it must end it, not poll on and on
    // (two factories: the holder is "another process", so the waiter asks the store every time)
    let t = 0;
    const store = new MemoryStore({ clock: { now: () => (t += 1000) } });
    const holder = new Locks({ store });
    const waiter = new Locks({ store });
    try {
      const key = uniqueKey('spin');
      await holder.mutex(key).acquire({ ttlMs: 2_000_000_000 });
      // before the fix the poller looped (microtasks only) until the holder's lease ran out by the clock, then took it
      await assert.rejects(waiter.mutex(key).acquire({ waitMs: 100 }), { code: 'ERR_LOCK_TIMEOUT' });
    } finally {
      await Promise.all([holder.close(), waiter.close()]);
    }
  });

  test('mutex - acquire throws LockTimeoutError (ERR_LOCK_TIMEOUT) after waitMs', async () => {
    const a = open();
    const b = open();
    const key = uniqueKey('timeout');
    const held = await b.mutex(key).acquire();
    await assert.rejects(a.mutex(key).acquire({ waitMs: 300 }), (err: unknown) => {
      assert.ok(err instanceof LockTimeoutError);
      assert.equal(err.code, 'ERR_LOCK_TIMEOUT');
      assert.equal(err.key, key);
      assert.equal(err.waitMs, 300);
      assert.match(err.message, /not acquired within 300 ms/);
      return true;
    });
    await assert.rejects(a.mutex(key).acquire({ waitMs: 0 }), { code: 'ERR_LOCK_TIMEOUT' });
    assert.equal((await a.inspect(key))?.token, held.lease?.token, 'the holder is untouched');
    await held.release();
  });

  test('mutex - an AbortSignal cancels waiting at once and leaves nothing locked', async () => {
    const a = open();
    const b = open();
    const key = uniqueKey('abort');
    const held = await b.mutex(key).acquire();
    const ac = new AbortController();
    const waiting = settle(a.mutex(key).acquire({ waitMs: 60_000, signal: ac.signal }));
    await sleep(100);
    const reason = new Error('user cancelled');
    ac.abort(reason);
    const outcome = await within(waiting, 2_000, 'rejection after abort');
    assert.equal(outcome.ok, false);
    const err = (outcome as { error: unknown }).error;
    assert.ok(err instanceof LockAbortedError);
    assert.equal(err.code, 'ERR_LOCK_ABORTED');
    assert.equal(err.cause, reason);

    // an already-aborted signal: no attempt at all, for acquire and tryAcquire alike
    await assert.rejects(a.mutex(key).acquire({ signal: ac.signal }), { code: 'ERR_LOCK_ABORTED' });
    await held.release();
    await assert.rejects(a.mutex(key).acquire({ signal: ac.signal }), { code: 'ERR_LOCK_ABORTED' });
    await assert.rejects(a.mutex(key).tryAcquire({ signal: ac.signal }), { code: 'ERR_LOCK_ABORTED' });
    // the cancelled waiter must not take the lock late
    await sleep(300);
    assert.equal(await a.inspect(key), null);
  });

  test('mutex - a holder whose lease expired cannot release or extend the next holder\'s lock', async () => {
    const a = open();
    const b = open();
    const key = uniqueKey('expired');
    const lost = lostEvent(a);
    const stale = await a.mutex(key).acquire({ ttlMs: 1_000, autoRenew: false });
    // memcached keeps a T-second item up to T s; the lease asked for 1 s is stored with T2
    await sleep(2_500);
    const next = await b.mutex(key).acquire({ waitMs: 5_000 });

    assert.equal(stale.isHeld, false);
    assert.equal(stale.state, 'lost');
    assert.ok(stale.signal.aborted);
    assert.ok(stale.signal.reason instanceof LockLostError);
    assert.equal((await lost).handle, stale);
    await assert.rejects(stale.extend(), (err: unknown) => err instanceof LockLostError && err.code === 'ERR_LOCK_LOST');
    assert.equal(await stale.release(), false);
    const info = await b.inspect(key);
    assert.equal(info?.token, next.lease?.token, 'the next holder still holds');
    assert.equal(next.isHeld, true);
    assert.ok(next.fencingToken > stale.fencingToken);
    assert.equal(await next.release(), true);
  });

  test('mutex - await using releases at the end of the scope', async () => {
    const a = open();
    const key = uniqueKey('using');
    let token: string | undefined;
    {
      await using h = await a.mutex(key).acquire();
      token = h.lease?.token;
      assert.equal((await a.inspect(key))?.token, token);
    }
    assert.ok(token);
    assert.equal(await a.inspect(key), null);
    await assert.rejects(
      (async () => {
        await using _h = await a.mutex(key).acquire();
        throw new Error('boom');
      })(),
      /boom/,
    );
    assert.equal(await a.inspect(key), null, 'released when the scope throws too');
  });

  test('mutex - waiters of one key in one process are served in arrival order', async () => {
    const a = open();
    const key = uniqueKey('fifo');
    const m = a.mutex(key);
    const holder = await m.acquire();
    const order: number[] = [];
    const waiters = [0, 1, 2, 3, 4].map((i) =>
      m.acquire({ waitMs: 30_000 }).then(async (h) => {
        order.push(i);
        await sleep(5);
        assert.equal(await h.release(), true);
      }),
    );
    await sleep(50);
    await holder.release();
    await within(Promise.all(waiters), SOON_MS * 2, 'all five waiters');
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    assert.equal(await a.inspect(key), null);
  });

  test('waiting line - tickets increase, markServed moves the line, and a waiter reads where it stands', async () => {
    const a = open();
    const store = a.store as MemcachedStore;
    const key = uniqueKey('line');
    const owner = { host: 'test', pid: 1, since: Date.now() };
    const held = await store.create(key, 5000, owner);
    assert.ok(held.acquired);
    const t1 = await store.enterQueue(key);
    const t2 = await store.enterQueue(key);
    assert.ok(Number.isInteger(t1) && t2 === t1 + 1, `tickets ${t1}, ${t2}`);
    assert.equal(await store.hasWaiters(key), true);
    const before = await store.create(key, 5000, owner, { wantServing: true });
    assert.equal(before.acquired, false);
    assert.ok(!before.acquired && before.serving !== undefined && t1 <= before.serving + 1, 'the first ticket is next');
    store.markServed(key, t1);
    await eventually(async () => {
      const r = await store.create(key, 5000, owner, { wantServing: true });
      assert.ok(!r.acquired && r.serving === t1, 'the line serves the first ticket');
    }, SOON_MS);
    store.markServed(key, t2);
    await eventually(async () => assert.equal(await store.hasWaiters(key), false), SOON_MS);
    assert.equal(await store.delete(held.lease), true);
  });

  test('waiting line - a waiter in another client gets a short hold within the hang guard, and nothing overlaps', async () => {
    const clients = [open(), open(), open()];
    const key = uniqueKey('handover');
    let inside = 0;
    let overlaps = 0;
    let done = 0;
    await within(
      Promise.all(
        clients.map(async (locks) => {
          for (let i = 0; i < 20; i++) {
            const h = await locks.mutex(key).acquire({ waitMs: 30_000 });
            if (++inside > 1) overlaps++;
            await sleep(2);
            inside--;
            assert.equal(await h.release(), true);
            done++;
          }
        }),
      ),
      SOON_MS * 3,
      '60 short holds by three clients',
    );
    assert.equal(done, 60);
    assert.equal(overlaps, 0);
    assert.equal(await clients[0]!.inspect(key), null);
  });

  test('fencing - tokens strictly increase across holders of a key, across clients', async () => {
    const clients = [open(), open(), open()];
    const key = uniqueKey('fencing');
    const tokens: bigint[] = [];
    for (let i = 0; i < 9; i++) {
      const locks = clients[i % clients.length]!;
      await locks.withLock(key, async (h) => {
        tokens.push(h.fencingToken);
        if (i % 2) await h.extend();
      });
    }
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `token ${i}`);
  });
});

describe('renewal', () => {
  test('renewal - auto renewal keeps a 1000 ms lock alive for 3 s inside withLock', async () => {
    const a = open();
    const b = open();
    const key = uniqueKey('renew');
    const renewalErrors: unknown[] = [];
    a.on('renewal-error', (_k: string, err: unknown) => renewalErrors.push(err));
    const result = await a.withLock(
      key,
      async (h) => {
        const first = h.lease;
        for (let i = 0; i < 6; i++) {
          await sleep(500);
          assert.equal(h.isHeld, true, `held after ${(i + 1) * 500} ms`);
          assert.equal(await b.mutex(key).tryAcquire(), null, `nobody else can take it after ${(i + 1) * 500} ms`);
        }
        assert.equal(h.signal.aborted, false);
        assert.notEqual(h.lease, first, 'the lease was renewed');
        assert.equal((await a.inspect(key))?.token, first?.token);
        return 'done';
      },
      { ttlMs: 1_000 },
    );
    assert.equal(result, 'done');
    assert.deepEqual(renewalErrors, []);
    assert.equal(await a.inspect(key), null, 'released after fn');
  });

  test('renewal - withLock releases when fn throws, and passes the error through', async () => {
    const a = open();
    const key = uniqueKey('throws');
    await assert.rejects(
      a.withLock(key, async () => {
        throw new Error('fn failed');
      }),
      /fn failed/,
    );
    assert.equal(await a.inspect(key), null);
  });
});

describe('restart', () => {
  test('restart - held leases are reported lost and a stale release deletes nothing', async () => {
    const s = await ownServer();
    const a = open({ servers: s.address });
    const b = open({ servers: s.address });
    const key = uniqueKey('restart');
    const lost = lostEvent(a);
    const h = await a.mutex(key).acquire({ ttlMs: 30_000 });
    const signalAborted = new Promise<void>((resolve) => h.signal.addEventListener('abort', () => resolve(), { once: true }));

    await s.restart();
    const ev = await within(lost, SOON_MS, 'lost event');
    await within(signalAborted, SOON_MS, 'signal abort');
    assert.equal(ev.key, key);
    assert.equal(ev.handle, h);
    const reason = h.signal.reason as LockLostError;
    assert.ok(reason instanceof LockLostError);
    assert.equal(reason, ev.error);
    assert.equal(reason.code, 'ERR_LOCK_LOST');
    assert.ok(reason.reason === 'disconnected' || reason.reason === 'server-restarted', reason.reason);
    assert.equal(h.state, 'lost');
    assert.equal(h.isHeld, false);
    assert.throws(() => h.throwIfLost(), LockLostError);

    const next = await b.mutex(key).acquire({ waitMs: 5_000 });
    // the new server's CAS counter restarted: the stale lease's CAS names the new holder's item
    assert.equal(next.fencingToken & LOW_64, h.fencingToken & LOW_64, 'same CAS on both sides of the restart');
    await eventually(() => a.inspect(uniqueKey('probe')), SOON_MS);
    assert.equal(await h.release(), false);
    await assert.rejects(h.extend(), { code: 'ERR_LOCK_NOT_HELD' });
    const info = await b.inspect(key);
    assert.equal(info?.token, next.lease?.token, "the new holder's lock survives");
    assert.equal(await next.release(), true);
  });

  test('restart - a stale release sent while the client reconnects deletes nothing', async (t) => {
    const s = await ownServer();
    // a long reconnect backoff keeps the old client down until the test reconnects it itself
    const a = open({ servers: s.address, reconnectMinDelayMs: 600_000, reconnectMaxDelayMs: 600_000 });
    const b = open({ servers: s.address });
    const key = uniqueKey('reconnect');
    const lost = lostEvent(a);
    const h = await a.mutex(key).acquire({ ttlMs: 30_000 });
    const conn = connectionOf(a);
    // wait for the client's first (immediate) reconnect attempt to fail: the next one is minutes away
    const failedRetry = failedReconnect(conn);
    await s.kill();
    await within(lost, SOON_MS, 'lost event');
    await within(failedRetry, SOON_MS, 'a failed reconnect attempt');
    await s.restart();
    const next = await b.mutex(key).acquire({ waitMs: 5_000 });
    assert.equal(next.fencingToken & LOW_64, h.fencingToken & LOW_64, 'same CAS on both sides of the restart');

    // the point of the test: the release is made while the connection is not ready yet (the
    // jittered backoff makes an early reconnect of its own very unlikely, but possible)
    if (conn.state === 'ready') {
      await next.release();
      return t.skip('the client reconnected on its own before the race could be set up');
    }
    // the release is queued while the connection is being re-established, then sent on the new one
    const reconnected = conn.connect();
    const released = h.release();
    await reconnected;
    const result = await settle(released);
    assert.ok(!result.ok || result.value === false, 'the stale release did not delete');
    const info = await b.inspect(key);
    assert.equal(info?.token, next.lease?.token, "the new holder's lock survives");

    assert.equal(await next.release(), true);
  });

  test('restart - a stale store-level extend sent while the client reconnects does not take over', async () => {
    const s = await ownServer();
    const stale = new MemcachedStore({ servers: s.address, reconnectMinDelayMs: 600_000, reconnectMaxDelayMs: 600_000 });
    const fresh = new MemcachedStore({ servers: s.address });
    try {
      const key = uniqueKey('reconnect-extend');
      const owner = { label: 'test' };
      const old = await stale.create(key, 30_000, owner);
      assert.ok(old.acquired);
      const conn = stale.client.connections[0]!;
      const failedRetry = failedReconnect(conn);
      await s.kill();
      await within(failedRetry, SOON_MS, 'a failed reconnect attempt');
      await s.restart();
      const now = await fresh.create(key, 30_000, owner);
      assert.ok(now.acquired);
      assert.equal(now.lease.fence & LOW_64, old.lease.fence & LOW_64, 'same CAS on both sides of the restart');

      const reconnected = conn.connect();
      const extended = settle(stale.extend(old.lease, 60_000));
      await reconnected;
      const result = await extended;
      assert.ok(!result.ok || result.value === null, 'the stale extend did not succeed');
      assert.equal((await fresh.inspect(key))?.token, now.lease.token, "the new holder's item is untouched");
      assert.equal(await fresh.delete(now.lease), true);
    } finally {
      await stale.close();
      await fresh.close();
    }
  });
});

describe('unavailable', () => {
  test('unavailable - the default policy throws LockUnavailableError (ERR_LOCK_UNAVAILABLE) promptly', async () => {
    const port = await closedPort();
    const a = open({ servers: `127.0.0.1:${port}`, connectTimeoutMs: 1_000 });
    const key = uniqueKey('down');
    // a 60 s wait that ends within the guard: the failure did not wait for waitMs
    const outcome = await within(settle(a.mutex(key).acquire({ waitMs: 60_000 })), SOON_MS, 'acquire on a dead server');
    assert.equal(outcome.ok, false);
    const err = (outcome as { error: unknown }).error;
    assert.ok(err instanceof LockUnavailableError, String(err));
    assert.equal(err.code, 'ERR_LOCK_UNAVAILABLE');
    assert.equal(err.key, key);
    assert.ok(err.cause instanceof ConnectionError, String(err.cause));
    await assert.rejects(a.mutex(key).tryAcquire(), { code: 'ERR_LOCK_UNAVAILABLE' });
    let ran = false;
    await assert.rejects(
      a.withLock(key, () => {
        ran = true;
      }),
      { code: 'ERR_LOCK_UNAVAILABLE' },
    );
    assert.equal(ran, false, 'fn does not run without the lock');
  });

  test("unavailable - onUnavailable: 'proceed' runs fn unlocked and says so", async () => {
    const port = await closedPort();
    const a = open({ servers: `127.0.0.1:${port}`, connectTimeoutMs: 1_000 });
    const key = uniqueKey('proceed');
    const unlocked: [string, unknown][] = [];
    a.on('unlocked', (k: string, cause: unknown) => unlocked.push([k, cause]));
    const result = await within(
      a.withLock(
        key,
        (h) => {
          assert.equal(h.locked, false);
          assert.equal(h.fencingToken, 0n);
          assert.equal(h.lease, null);
          assert.equal(h.signal.aborted, false);
          return 42;
        },
        { onUnavailable: 'proceed' },
      ),
      SOON_MS,
      'withLock on a dead server',
    );
    assert.equal(result, 42);
    assert.equal(unlocked.length, 1);
    assert.equal(unlocked[0]![0], key);
    assert.ok(unlocked[0]![1] instanceof ConnectionError);
  });
});

test("unavailable - a bad argument from the store is thrown, never run unlocked, even with 'proceed'", async () => {
  // a store stricter than the factory about keys
  class StrictStore extends MemoryStore {
    override create(key: string, ttlMs: number, owner: OwnerInfo, options?: CreateOptions): Promise<CreateResult> {
      if (key.includes('/')) return Promise.reject(new InvalidArgumentError(`lock key must not contain "/", got ${JSON.stringify(key)}`));
      return super.create(key, ttlMs, owner, options);
    }
  }
  const a = new Locks({ store: new StrictStore() });
  opened.push(a);
  const unlocked: unknown[] = [];
  a.on('unlocked', (_k: string, cause: unknown) => unlocked.push(cause));
  let ran = false;
  await assert.rejects(
    a.withLock(
      'a/b',
      () => {
        ran = true;
      },
      { onUnavailable: 'proceed' },
    ),
    INVALID(/must not contain/),
  );
  assert.equal(ran, false);
  assert.deepEqual(unlocked, []);
});

describe('eviction warning', () => {
  async function warningsFor(args: string[]): Promise<[string, string][]> {
    const s = await ownServer(args);
    const a = open({ servers: s.address });
    const warnings: [string, string][] = [];
    a.on('warning', (message: string, srv: string) => warnings.push([message, srv]));
    for (let i = 0; i < 3; i++) await a.withLock(uniqueKey('evict'), () => {});
    return warnings;
  }

  test('eviction warning - emitted once for a server that may evict lock keys, with the fix', async () => {
    const warnings = await warningsFor([]);
    assert.equal(warnings.length, 1);
    const [message, srv] = warnings[0]!;
    assert.match(srv, /^127\.0\.0\.1:\d+$/);
    assert.match(message, /may evict lock keys/);
    assert.match(message, /-M/);
    assert.match(message, /-o temporary_ttl=62/);
  });

  test('eviction warning - a temporary_ttl shorter than the longest lock TTL still warns', async () => {
    const warnings = await warningsFor(['-o', 'temporary_ttl=30']);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]![0], /temporary_ttl=30 < 62 s/);
  });

  test('eviction warning - refuseUnsafeServers refuses the lock and leaves nothing locked', async () => {
    const s = await ownServer([]);
    const strict = open({ servers: s.address, refuseUnsafeServers: true, onWarning: () => {} });
    const other = open({ servers: s.address, onWarning: () => {} });
    const key = uniqueKey('refused');
    await assert.rejects(strict.mutex(key).acquire({ waitMs: 0 }), (err: unknown) => {
      assert.ok(err instanceof LockUnavailableError, String(err));
      assert.equal((err.cause as { code?: string }).code, 'ERR_UNSAFE_SERVER');
      return true;
    });
    assert.equal(await other.inspect(key), null, 'the refused item was taken back');
    const h = await other.mutex(key).tryAcquire();
    assert.ok(h, 'another client gets the key at once');
    await h.release();
  });

  test('eviction warning - not emitted for -M or a temporary_ttl that covers the TTL', async () => {
    assert.deepEqual(await warningsFor(['-M']), []);
    assert.deepEqual(await warningsFor(['-o', 'temporary_ttl=120']), []);
  });
});

// ---------------------------------------------------------------------------

const INVALID = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
  assert.equal(err.code, 'ERR_INVALID_ARGUMENT');
  assert.match(err.message, pattern);
  return true;
};

/** The call must return a rejected promise (a promise-returning API never throws synchronously). */
async function rejectsInvalid(call: () => Promise<unknown>, pattern: RegExp, what: string): Promise<void> {
  let p: Promise<unknown>;
  try {
    p = call();
  } catch (err) {
    assert.fail(`${what}: threw synchronously instead of rejecting: ${String(err)}`);
  }
  await assert.rejects(p, INVALID(pattern), what);
}

function show(v: unknown): string {
  if (typeof v === 'string') return v.length > 20 ? `a string of ${v.length}` : JSON.stringify(v);
  return typeof v === 'bigint' ? `${v}n` : String(v);
}

describe('arguments', () => {
  const KEY_RE = /lock key must be a non-empty, well-formed string/;
  const TTL_RE = /ttlMs must be an integer number of milliseconds from 1000 to 2591999000/;
  const WAIT_RE = /waitMs must be an integer from 0 to 86400000/;
  const FN_RE = /fn must be a function/;
  const OPTS_RE = /options must be an object/;

  test('arguments - bad keys get InvalidArgumentError everywhere', async () => {
    const a = open();
    const fn = (): void => {};
    for (const key of ['', 42, null, undefined, {}, '\uD800', 'x\uDFFFy', 'k'.repeat(65_537)] as unknown as string[]) {
      const w = show(key);
      assert.throws(() => a.mutex(key), INVALID(KEY_RE), `mutex(${w})`);
      assert.throws(() => a.reentrant(key), INVALID(KEY_RE), `reentrant(${w})`);
      await rejectsInvalid(() => a.withLock(key, fn), KEY_RE, `withLock(${w})`);
      await rejectsInvalid(() => a.withReentrantLock(key, fn), KEY_RE, `withReentrantLock(${w})`);
      await rejectsInvalid(() => a.inspect(key), KEY_RE, `inspect(${w})`);
      await rejectsInvalid(() => a.forceRelease(key), KEY_RE, `forceRelease(${w})`);
    }
  });

  test('arguments - bad ttlMs and waitMs get InvalidArgumentError and lock nothing', async () => {
    const a = open();
    const key = uniqueKey('args-ttl');
    const m = a.mutex(key);
    const r = a.reentrant(key);
    const fn = (): void => assert.fail('fn must not run');
    for (const ttlMs of [0, 999, 1.5, NaN, Infinity, -1, '1000', 2_592_000_000, 2_591_999_001]) {
      const w = `ttlMs ${show(ttlMs)}`;
      const o = { ttlMs } as unknown as { ttlMs: number };
      await rejectsInvalid(() => m.acquire(o), TTL_RE, `acquire ${w}`);
      await rejectsInvalid(() => m.tryAcquire(o), TTL_RE, `tryAcquire ${w}`);
      await rejectsInvalid(() => m.withLock(fn, o), TTL_RE, `mutex.withLock ${w}`);
      await rejectsInvalid(() => a.withLock(key, fn, o), TTL_RE, `locks.withLock ${w}`);
      await rejectsInvalid(() => r.acquire(o), TTL_RE, `reentrant.acquire ${w}`);
      await rejectsInvalid(() => r.withLock(fn, o), TTL_RE, `reentrant.withLock ${w}`);
      assert.throws(() => a.mutex(key, o), INVALID(TTL_RE), `mutex defaults ${w}`);
      assert.throws(() => new Locks({ servers: server.address, defaults: o }), INVALID(TTL_RE), `factory defaults ${w}`);
    }
    for (const waitMs of [-1, Infinity, 1.5, NaN, '10', 86_400_001]) {
      const w = `waitMs ${show(waitMs)}`;
      const o = { waitMs } as unknown as { waitMs: number };
      await rejectsInvalid(() => m.acquire(o), WAIT_RE, `acquire ${w}`);
      await rejectsInvalid(() => m.withLock(fn, o), WAIT_RE, `withLock ${w}`);
      await rejectsInvalid(() => r.acquire(o), WAIT_RE, `reentrant.acquire ${w}`);
    }
    assert.equal(await a.inspect(key), null, 'nothing was locked');

    // a held lock: a bad extension leaves it held
    const h = await m.acquire();
    await rejectsInvalid(() => h.extend(0), TTL_RE, 'extend(0)');
    await rejectsInvalid(() => h.extend(NaN), TTL_RE, 'extend(NaN)');
    assert.equal(h.isHeld, true);
    assert.equal(await h.release(), true);
    assert.equal(await a.inspect(key), null);
  });

  test('arguments - a non-function fn and non-object options get InvalidArgumentError and lock nothing', async () => {
    const a = open();
    const key = uniqueKey('args-fn');
    const m = a.mutex(key);
    const r = a.reentrant(key);
    for (const fn of [42, null, undefined, 'fn', {}] as unknown as (() => void)[]) {
      const w = `fn ${show(fn)}`;
      await rejectsInvalid(() => a.withLock(key, fn), FN_RE, `locks.withLock ${w}`);
      await rejectsInvalid(() => m.withLock(fn), FN_RE, `mutex.withLock ${w}`);
      await rejectsInvalid(() => r.withLock(fn), FN_RE, `reentrant.withLock ${w}`);
      await rejectsInvalid(() => a.withReentrantLock(key, fn), FN_RE, `withReentrantLock ${w}`);
      assert.throws(() => a.wrap(fn, { key: () => key }), INVALID(FN_RE), `wrap ${w}`);
    }
    for (const o of [42, 'options', null, true, 10n, []] as unknown as object[]) {
      const w = `options ${Array.isArray(o) ? 'an array' : show(o)}`;
      await rejectsInvalid(() => m.acquire(o), OPTS_RE, `acquire ${w}`);
      await rejectsInvalid(() => m.tryAcquire(o), OPTS_RE, `tryAcquire ${w}`);
      await rejectsInvalid(() => m.withLock(() => {}, o), OPTS_RE, `mutex.withLock ${w}`);
      await rejectsInvalid(() => a.withLock(key, () => {}, o), OPTS_RE, `locks.withLock ${w}`);
      await rejectsInvalid(() => r.acquire(o), OPTS_RE, `reentrant.acquire ${w}`);
      await rejectsInvalid(() => r.tryAcquire(o), OPTS_RE, `reentrant.tryAcquire ${w}`);
      await rejectsInvalid(() => r.withLock(() => {}, o), OPTS_RE, `reentrant.withLock ${w}`);
      await rejectsInvalid(() => a.withReentrantLock(key, () => {}, o), OPTS_RE, `withReentrantLock ${w}`);
      assert.throws(() => a.mutex(key, o), INVALID(OPTS_RE), `mutex(key, ${w})`);
      assert.throws(() => a.reentrant(key, o), INVALID(OPTS_RE), `reentrant(key, ${w})`);
      if (o !== null && !Array.isArray(o)) assert.throws(() => new Locks(o), INVALID(OPTS_RE), `new Locks(${w})`);
    }
    assert.equal(await a.inspect(key), null, 'nothing was locked');
  });

  test('arguments - other bad options name what they expect', async () => {
    const a = open();
    const key = uniqueKey('args-other');
    const m = a.mutex(key);
    const cases: [object, RegExp][] = [
      [{ renewAt: 0.05 }, /renewAt must be a number from 0.1 to 0.9/],
      [{ renewAt: NaN }, /renewAt must be a number from 0.1 to 0.9/],
      [{ autoRenew: 'yes' }, /autoRenew must be a boolean/],
      [{ onUnavailable: 'maybe' }, /onUnavailable must be "fail" or "proceed"/],
      [{ signal: 'stop' }, /signal must be an AbortSignal/],
      [{ label: 42 }, /label must be a string of at most 200 characters/],
      [{ retryMinDelayMs: 0 }, /retryMinDelayMs must be an integer from 1/],
      [{ retryMinDelayMs: 50, retryMaxDelayMs: 10 }, /retryMaxDelayMs must be an integer from 50/],
    ];
    for (const [o, re] of cases) {
      await rejectsInvalid(() => m.acquire(o), re, `acquire ${JSON.stringify(o)}`);
      await rejectsInvalid(() => a.withLock(key, () => {}, o), re, `withLock ${JSON.stringify(o)}`);
    }
    await rejectsInvalid(() => a.reentrant(key).acquire({ owner: {} } as never), /owner must be a LockOwner/, 'owner {}');
    assert.throws(() => new Locks({ store: {} as never }), INVALID(/store must implement LockStore/));
    assert.throws(() => new Locks({ connectTimeoutMs: -1 }), INVALID(/connectTimeoutMs must be an integer/));
    // factory and store options fail at construction, not at the first acquisition
    const servers = server.address;
    assert.throws(() => new Locks({ servers, clock: 5 as never }), INVALID(/clock must be an object with a now\(\) method/));
    assert.throws(() => new Locks({ servers, onWarning: 'x' as never }), INVALID(/onWarning must be a function/));
    assert.throws(() => new Locks({ servers, tls: 'yes' as never }), INVALID(/tls must be true, false or node:tls connect options/));
    assert.throws(() => new Locks({ servers, reconnectMinDelayMs: 500, reconnectMaxDelayMs: 100 }), INVALID(/must not be greater than reconnectMaxDelayMs/));
    assert.throws(() => new Locks({ servers, burstPollMicros: -1 }), INVALID(/burstPollMicros must be an integer number of microseconds from 0 to 10000, got -1/));
    assert.throws(() => new Locks({ servers, burstPollMicros: 0.5 }), INVALID(/burstPollMicros must be an integer/));
    assert.throws(() => new Locks({ servers, defaults: 'x' as never }), INVALID(/defaults must be an object/));
    assert.throws(() => a.serializer({ isConflict: () => false, acquire: 'x' as never }), INVALID(/acquire must be an object/));
    assert.throws(() => a.serializer({ isConflict: () => false, batch: null as never }), INVALID(/batch must be false or an object/));
    assert.equal(await a.inspect(key), null, 'nothing was locked');
  });
});
