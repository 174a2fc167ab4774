/**
 * The store contract: one suite that every LockStore must pass (memory, memcached). It speaks
 * only the LockStore interface; what differs between stores (how time passes, how a restart
 * happens) comes from the fixture.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';

import { InvalidArgumentError, MAX_TTL_MS, MIN_TTL_MS, type Lease, type LockStore, type OwnerInfo } from '../../src/index.js';
import { eventually, settle, sleep, uniqueKey, within } from '../helpers/util.js';

export interface StoreFixture {
  store: LockStore;
  /** Makes the backend forget every lock, as a memcached restart does. Tests needing it are skipped without it. */
  restart?: () => Promise<void>;
  /** Lets at least `ms` of lease time pass for the store (memory: fake clock; memcached: real sleep past the server TTL). */
  elapse?: (ms: number) => Promise<void>;
  cleanup: () => Promise<void>;
}

const OWNER_A: OwnerInfo = { host: 'host-a', pid: 101, since: 1_700_000_000_000, label: 'contract-a' };
const OWNER_B: OwnerInfo = { host: 'host-b', pid: 202, since: 1_700_000_000_001 };

/** Hang guard for things that should happen "soon": generous, never a performance assertion. */
const SOON_MS = 10_000;

function isInvalidArgument(err: unknown): boolean {
  return err instanceof InvalidArgumentError && err.code === 'ERR_INVALID_ARGUMENT';
}

async function mustCreate(store: LockStore, key: string, ttlMs: number, owner = OWNER_A): Promise<Lease> {
  const r = await store.create(key, ttlMs, owner);
  assert.equal(r.acquired, true, `expected to acquire ${key}`);
  return (r as { lease: Lease }).lease;
}

export function storeContract(name: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`${name} contract`, () => {
    let fx: StoreFixture;
    let store: LockStore;

    beforeEach(async () => {
      fx = await makeStore();
      store = fx.store;
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    const elapse = (ms: number): Promise<void> => (fx.elapse ? fx.elapse(ms) : sleep(ms));

    test(`${name} - create grants a free key and answers acquired: false while it is held`, async () => {
      const key = uniqueKey('create');
      const lease = await mustCreate(store, key, 30_000);
      assert.equal(lease.key, key);
      assert.match(lease.token, /^[0-9a-f]{32}$/, 'token: 128 random bits, hex');
      assert.equal(typeof lease.fence, 'bigint');
      assert.ok(lease.validUntil > store.clock.now(), 'a fresh lease is valid');
      assert.equal(typeof lease.server, 'string');

      const again = await store.create(key, 30_000, OWNER_B);
      assert.equal(again.acquired, false);
      assert.equal('remainingMs' in again ? again.remainingMs : undefined, undefined, 'no remainingMs unless asked');
      assert.equal(await store.delete(lease), true);
    });

    test(`${name} - create with wantRemaining reports how long the holder can still hold`, async () => {
      const key = uniqueKey('remaining');
      const ttlMs = 5_000;
      const lease = await mustCreate(store, key, ttlMs);
      const r = await store.create(key, 30_000, OWNER_B, { wantRemaining: true });
      assert.equal(r.acquired, false);
      const remaining = (r as { remainingMs?: number }).remainingMs;
      assert.equal(typeof remaining, 'number');
      // memcached counts whole seconds and rounds the lease up by one: within a second or two of the TTL
      assert.ok(remaining! > 0 && remaining! >= ttlMs - 2_000 && remaining! <= ttlMs + 2_000, `remainingMs ${remaining}`);
      await store.delete(lease);
    });

    test(`${name} - create: of many concurrent creates of one key exactly one wins`, async () => {
      const key = uniqueKey('race');
      const results = await Promise.all(Array.from({ length: 10 }, () => store.create(key, 30_000, OWNER_A)));
      const winners = results.filter((r) => r.acquired);
      assert.equal(winners.length, 1);
      const lease = (winners[0] as { lease: Lease }).lease;
      assert.equal((await store.inspect(key))?.token, lease.token);
      assert.equal(await store.delete(lease), true);
    });

    test(`${name} - extend returns a new lease with a later validUntil and keeps the lock`, async () => {
      const key = uniqueKey('extend');
      const lease = await mustCreate(store, key, 2_000);
      const next = await store.extend(lease, 20_000);
      assert.ok(next, 'extended');
      assert.notEqual(next, lease, 'a new lease object');
      assert.ok(next.validUntil > lease.validUntil, `validUntil ${next.validUntil} > ${lease.validUntil}`);
      assert.equal(next.token, lease.token);
      assert.equal(next.key, key);
      assert.equal(next.fence, lease.fence, 'extending does not change the fencing token');
      const info = await store.inspect(key);
      assert.equal(info?.token, lease.token);
      assert.ok(info.remainingMs !== null && info.remainingMs > 2_000 + 1_000, `remaining ${info.remainingMs} after extend`);
      // extending again with the newest lease works; the lock is still ours
      const third = await store.extend(next, 30_000);
      assert.ok(third);
      assert.equal(await store.delete(third), true);
      assert.equal(await store.inspect(key), null);
    });

    test(`${name} - extend and delete with a stale lease return null/false and never touch the new holder`, async () => {
      const key = uniqueKey('stale');
      const stale = await mustCreate(store, key, MIN_TTL_MS);
      await elapse(MIN_TTL_MS);
      assert.equal(await store.inspect(key), null, 'the lease expired');
      const fresh = await mustCreate(store, key, 30_000, OWNER_B);
      assert.ok(fresh.fence > stale.fence, 'the new holder has a higher fence');

      assert.equal(await store.extend(stale, 30_000), null, 'stale extend');
      assert.equal(await store.delete(stale), false, 'stale delete');
      const info = await store.inspect(key);
      assert.equal(info?.token, fresh.token, 'the new holder still holds');
      assert.deepEqual(info.owner, OWNER_B);
      assert.equal(info.fence, fresh.fence);
      assert.equal(await store.delete(fresh), true);
    });

    test(`${name} - extend of an expired lease whose key is free returns null and creates nothing`, async () => {
      const key = uniqueKey('expired-extend');
      const lease = await mustCreate(store, key, MIN_TTL_MS);
      await elapse(MIN_TTL_MS);
      assert.equal(await store.extend(lease, 30_000), null);
      assert.equal(await store.inspect(key), null);
      assert.equal(await store.delete(lease), false);
    });

    test(`${name} - delete answers true once, then false; extend after delete answers null`, async () => {
      const key = uniqueKey('delete');
      const lease = await mustCreate(store, key, 30_000);
      assert.equal(await store.delete(lease), true);
      assert.equal(await store.delete(lease), false);
      assert.equal(await store.extend(lease, 30_000), null);
      assert.equal(await store.inspect(key), null);
      // free again: anyone can take it
      const next = await mustCreate(store, key, 30_000, OWNER_B);
      assert.equal(await store.delete(lease), false, 'the old lease cannot delete the new holder');
      assert.equal((await store.inspect(key))?.token, next.token);
      assert.equal(await store.delete(next), true);
    });

    test(`${name} - inspect shows token, owner, fence and remaining time; null when free`, async () => {
      const key = uniqueKey('inspect');
      assert.equal(await store.inspect(key), null);
      const ttlMs = 10_000;
      const lease = await mustCreate(store, key, ttlMs);
      const info = await store.inspect(key);
      assert.ok(info);
      assert.equal(info.key, key);
      assert.equal(info.token, lease.token);
      assert.deepEqual(info.owner, OWNER_A);
      assert.equal(info.fence, lease.fence);
      assert.equal(info.server, lease.server);
      assert.ok(info.remainingMs !== null && info.remainingMs > 0 && info.remainingMs <= ttlMs + 2_000, `remainingMs ${info.remainingMs}`);
      assert.ok(info.remainingMs >= ttlMs - 2_000, `remainingMs ${info.remainingMs}`);
      await store.delete(lease);
      assert.equal(await store.inspect(key), null);
    });

    test(`${name} - forceDelete removes whoever holds the key; the old lease is then powerless`, async () => {
      const key = uniqueKey('force');
      assert.equal(await store.forceDelete(key), false, 'nothing to delete');
      const lease = await mustCreate(store, key, 30_000);
      assert.equal(await store.forceDelete(key), true);
      assert.equal(await store.inspect(key), null);
      assert.equal(await store.forceDelete(key), false);
      const next = await mustCreate(store, key, 30_000, OWNER_B);
      assert.equal(await store.delete(lease), false);
      assert.equal(await store.extend(lease, 30_000), null);
      assert.equal((await store.inspect(key))?.token, next.token);
      await store.delete(next);
    });

    test(`${name} - fencing tokens strictly increase across successive holders of a key`, async () => {
      const key = uniqueKey('fence');
      const other = uniqueKey('fence-other');
      const fences: bigint[] = [];
      for (let i = 0; i < 6; i++) {
        const lease = await mustCreate(store, key, 30_000, i % 2 ? OWNER_B : OWNER_A);
        fences.push(lease.fence);
        // unrelated writes in between (other keys, extensions) must not break the order
        const noise = await mustCreate(store, other, 30_000);
        const extended = await store.extend(lease, 30_000);
        assert.ok(extended);
        assert.equal(await store.delete(noise), true);
        assert.equal(await store.delete(extended), true);
      }
      for (let i = 1; i < fences.length; i++) {
        assert.ok(fences[i]! > fences[i - 1]!, `fence ${i}: ${fences[i]} > ${fences[i - 1]}`);
      }
    });

    test(`${name} - watchLease fires once on a restart, and a stale delete afterwards deletes nothing`, async (t) => {
      if (!fx.restart) return t.skip('the fixture cannot restart its store');
      const key = uniqueKey('restart');
      const probe = uniqueKey('restart-probe');
      const lease = await mustCreate(store, key, 30_000);
      const calls: string[] = [];
      let unsubscribedCalls = 0;
      const fired = new Promise<string>((resolve) => {
        store.watchLease(lease, (reason) => {
          calls.push(reason);
          resolve(reason);
        });
      });
      const unsubscribe = store.watchLease(lease, () => unsubscribedCalls++);
      unsubscribe();

      await fx.restart();
      const reason = await within(fired, SOON_MS, 'watchLease callback after restart');
      assert.ok(reason === 'disconnected' || reason === 'server-restarted', `reason ${reason}`);

      // the store works again once it has reconnected
      await eventually(() => store.inspect(probe), SOON_MS);
      assert.equal(await store.inspect(key), null, 'the restart forgot the lock');
      const fresh = await mustCreate(store, key, 30_000, OWNER_B);
      assert.equal(await store.delete(lease), false, 'stale delete after restart');
      assert.equal(await store.extend(lease, 30_000), null, 'stale extend after restart');
      const info = await store.inspect(key);
      assert.equal(info?.token, fresh.token, "the new holder's lock survives");
      assert.deepEqual(calls, [reason], 'called exactly once');
      assert.equal(unsubscribedCalls, 0, 'an unsubscribed watcher is not called');
      assert.equal(await store.delete(fresh), true);
    });

    test(`${name} - watchLease of a lease granted before a restart reports it lost at once`, async (t) => {
      if (!fx.restart) return t.skip('the fixture cannot restart its store');
      const key = uniqueKey('restart-late');
      const lease = await mustCreate(store, key, 30_000);
      await fx.restart();
      await eventually(() => store.inspect(uniqueKey('restart-late-probe')), SOON_MS);
      const reason = await within(
        new Promise<string>((resolve) => store.watchLease(lease, resolve)),
        SOON_MS,
        'watchLease callback for a lease from before the restart',
      );
      assert.ok(reason === 'disconnected' || reason === 'server-restarted', `reason ${reason}`);
      assert.equal(await store.delete(lease), false);
    });

    test(`${name} - bad TTLs are rejected with InvalidArgumentError and nothing is locked`, async () => {
      const key = uniqueKey('ttl');
      const bad: unknown[] = [0, 999, 1.5, 1000.5, NaN, Infinity, -Infinity, -1, -1000, '1000', null, undefined, 10n, MAX_TTL_MS + 1, 2_592_000_000, 30 * 86_400_000 + 1_000];
      for (const ttl of bad) {
        await assert.rejects(
          async () => store.create(key, ttl as number, OWNER_A),
          (err: unknown) => isInvalidArgument(err) && /ttlMs must be an integer/.test((err as Error).message),
          `create with ttlMs ${String(ttl)}`,
        );
      }
      assert.equal(await store.inspect(key), null);
      const lease = await mustCreate(store, key, 30_000);
      for (const ttl of bad) {
        await assert.rejects(async () => store.extend(lease, ttl as number), isInvalidArgument, `extend with ttlMs ${String(ttl)}`);
      }
      assert.equal((await store.inspect(key))?.token, lease.token, 'bad extends leave the lock as it was');
      assert.equal(await store.delete(lease), true);
    });

    test(`${name} - the TTL bounds ${MIN_TTL_MS} ms and MAX_TTL_MS (30 days minus 1 s) are accepted`, async () => {
      const key = uniqueKey('ttl-bounds');
      const short = await mustCreate(store, key, MIN_TTL_MS);
      const long = await store.extend(short, MAX_TTL_MS);
      assert.ok(long, 'extended to MAX_TTL_MS');
      const info = await store.inspect(key);
      assert.ok(info?.remainingMs !== null && info!.remainingMs > 29 * 86_400_000, `remaining ${info?.remainingMs}`);
      assert.equal(await store.delete(long), true);
      const max = await mustCreate(store, key, MAX_TTL_MS);
      assert.ok((await store.inspect(key))!.remainingMs! > 29 * 86_400_000);
      assert.equal(await store.delete(max), true);
    });

    test(`${name} - bad keys are rejected with InvalidArgumentError`, async () => {
      const bad: unknown[] = ['', 42, null, undefined, {}, '\uD800', 'a\uDC00b', 'x'.repeat(65_537)];
      for (const key of bad) {
        const what = typeof key === 'string' && key.length > 40 ? `a key of ${key.length} characters` : JSON.stringify(key);
        await assert.rejects(async () => store.create(key as string, 30_000, OWNER_A), isInvalidArgument, `create ${what}`);
        await assert.rejects(async () => store.inspect(key as string), isInvalidArgument, `inspect ${what}`);
        await assert.rejects(async () => store.forceDelete(key as string), isInvalidArgument, `forceDelete ${what}`);
      }
    });

    test(`${name} - a lease the store did not create is rejected with InvalidArgumentError`, async () => {
      const fake: Lease = { key: uniqueKey('foreign'), token: '0'.repeat(32), fence: 1n, validUntil: Infinity, server: 'elsewhere' };
      await assert.rejects(async () => store.extend(fake, 30_000), isInvalidArgument);
      await assert.rejects(async () => store.delete(fake), isInvalidArgument);
      assert.throws(() => store.watchLease(fake, () => {}), isInvalidArgument);
    });

    test(`${name} - names that differ only in spaces, case, Unicode or beyond 250 bytes are different locks`, async () => {
      const base = uniqueKey('names');
      const long = 'L'.repeat(400);
      const names = [
        base,
        `${base} `,
        `${base.toUpperCase()}`,
        `${base}\u00fc`,
        `${base}u\u0308`,
        `${base}\n`,
        `${base}${long}a`,
        `${base}${long}b`,
        `${base}\u{1F512}`,
      ];
      const leases: Lease[] = [];
      for (const n of names) leases.push(await mustCreate(store, n, 30_000));
      for (let i = 0; i < names.length; i++) {
        const info = await store.inspect(names[i]!);
        assert.equal(info?.token, leases[i]!.token, `name #${i}`);
        assert.equal(info.key, names[i]);
      }
      for (const l of leases) assert.equal(await store.delete(l), true);
    });

    for (const [label, suffix] of [
      ['a plain name', ''],
      ['a name with spaces and Unicode', ' \u00fc \u{1F512}'],
      ['a name longer than 250 bytes', 'x'.repeat(300)],
    ] as const) {
      test(`${name} - waitForRelease resolves soon after a release (${label})`, async (t) => {
        if (!store.waitForRelease) return t.skip('the store has no waitForRelease');
        const key = uniqueKey('wake') + suffix;
        const lease = await mustCreate(store, key, 30_000);
        let resolved = false;
        const waiting = store.waitForRelease(key, 60_000).then(() => {
          resolved = true;
        });
        assert.equal(await store.delete(lease), true);
        // A push channel may need a moment to be established: keep releasing until the waiter
        // wakes. It waits 60 s otherwise, so waking within the guard below means a release woke it.
        const deadline = Date.now() + SOON_MS;
        while (!resolved && Date.now() < deadline) {
          await Promise.race([waiting, sleep(100)]);
          if (resolved) break;
          const again = await mustCreate(store, key, 30_000);
          assert.equal(await store.delete(again), true);
        }
        await within(waiting, 1, 'waitForRelease after releases');
      });
    }

    test(`${name} - waitForRelease resolves at its timeout and when its signal aborts, never rejecting`, async (t) => {
      if (!store.waitForRelease) return t.skip('the store has no waitForRelease');
      const key = uniqueKey('wake-timeout');
      const lease = await mustCreate(store, key, 30_000);
      await within(store.waitForRelease(key, 20), SOON_MS, 'waitForRelease timeout');
      const ac = new AbortController();
      const aborted = settle(store.waitForRelease(key, 60_000, ac.signal));
      ac.abort(new Error('stop'));
      const outcome = await within(aborted, SOON_MS, 'waitForRelease abort');
      assert.equal(outcome.ok, true);
      const pre = new AbortController();
      pre.abort();
      await within(store.waitForRelease(key, 60_000, pre.signal), SOON_MS, 'waitForRelease with an aborted signal');
      assert.equal((await store.inspect(key))?.token, lease.token, 'waiting takes nothing');
      await store.delete(lease);
    });
  });
}
