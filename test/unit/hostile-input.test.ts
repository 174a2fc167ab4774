/**
 * Hostile input: property-based fuzzing (fast-check) of every public entry point's arguments,
 * and fake servers answering garbage. The rules:
 *
 * - a key either works (acquire, inspect shows the holder, release, inspect shows nothing) or
 *   is refused with InvalidArgumentError; a bad TTL or option is refused with
 *   InvalidArgumentError;
 * - nothing but a MemcachedLockError ever comes out, nothing hangs, nothing stays locked;
 * - no key, prefix or label can inject a command: a victim lock survives them all;
 * - a server answering garbage, oversized values, wrong opaque tokens or nothing at all only
 *   produces typed errors.
 *
 * Runs against a real memcached (started here) where round trips matter; numRuns is bounded so
 * the file stays fast.
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';

import fc from 'fast-check';

import {
  encodeKey,
  InvalidArgumentError,
  LockUnavailableError,
  Locks,
  MAX_TTL_MS,
  MemcachedLockError,
  MemcachedStore,
  MemoryStore,
  parseAddress,
  parseServerList,
  type LocksOptions,
} from '../../src/index.js';
import { FakeServer, replyWith } from '../helpers/fake-server.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { uniqueKey } from '../helpers/util.js';

/** Hang guard per call: generous, never a performance assertion. */
const HANG_MS = 8_000;
const NUM_RUNS = Number(process.env.FUZZ_RUNS ?? 150);

let server: MemcachedServer;
/** A server with eviction on (memcached's default), so eviction warnings fire. */
let evicting: MemcachedServer;
const opened: Locks[] = [];

before(async () => {
  [server, evicting] = await Promise.all([MemcachedServer.start({ args: ['-M'] }), MemcachedServer.start()]);
});
after(async () => {
  await Promise.all(opened.splice(0).map((l) => l.close()));
  await Promise.all([server?.stop(), evicting?.stop()]);
});

function open(options: LocksOptions = {}): Locks {
  const locks = new Locks({ servers: server.address, prefix: 'hostile:', requestTimeoutMs: 2_000, ...options });
  opened.push(locks);
  return locks;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: MemcachedLockError };

/** Runs `fn` (sync or async) with a hang guard; any error must be a MemcachedLockError. */
async function typed<T>(what: string, fn: () => T | Promise<T>): Promise<Outcome<Awaited<T>>> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const value = await Promise.race([
      (async () => fn())(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} hung for ${HANG_MS} ms`)), HANG_MS);
      }),
    ]);
    return { ok: true, value: value as Awaited<T> };
  } catch (error) {
    assert.ok(error instanceof MemcachedLockError, `${what} threw a non-MemcachedLockError: ${error instanceof Error ? error.stack : String(error)}`);
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

function assertInvalid(o: Outcome<unknown>, what: string): void {
  assert.ok(!o.ok, `${what} was accepted`);
  assert.ok(o.error instanceof InvalidArgumentError, `${what}: expected InvalidArgumentError, got ${o.error.name}: ${o.error.message}`);
}

// ---------------------------------------------------------------------------------------------
// arbitraries

const NASTY = [
  '\r', '\n', '\r\n', ' ', '\t', '\0', '\u0001', '\u007f', '\u0085', '\u00a0', '\u2028', '\ufeff', 'é', '😀', '\uffff',
  '\ud800', '\udc00', '\udbff\udfff', 'flush_all', 'mn', 'ms', 'md', ' T0', ' b', ' q', 'C1', '%0D%0A', '%', '"', '\\',
];
const nastyPiece = fc.oneof(fc.constantFrom(...NASTY), fc.string({ maxLength: 4 }), fc.string({ unit: 'binary', maxLength: 4 }));
const nastyString = fc.array(nastyPiece, { maxLength: 12 }).map((a) => a.join(''));
/** Strings around memcached's 250-byte key limit (and the 186-byte base64 limit), in 1-4 byte characters. */
const aroundLimits = fc.tuple(fc.integer({ min: 40, max: 300 }), fc.constantFrom('a', ' ', 'é', '€', '😀', '\r\n')).map(([n, c]) => c.repeat(n));
const stringKey = fc.oneof(
  { weight: 3, arbitrary: nastyString },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
  { weight: 2, arbitrary: aroundLimits },
  { weight: 1, arbitrary: fc.constantFrom('', 'x'.repeat(65_536), 'x'.repeat(65_537), 'a\r\nflush_all\r\n', 'k\r\nmd hostile:victim\r\n') },
);
const SPECIAL_VALUES: unknown[] = [
  0, -1, -0, 1, 0.5, 999, 1000.5, NaN, Infinity, -Infinity, 2 ** 53, 1e300, Number.MIN_VALUE, '1000', '', 'abc', 1000n, true, false,
  null, undefined, {}, [], [1000], () => 1000, Symbol('s'), new Date(0), /x/, new Error('e'),
];
const anyValue = fc.oneof(fc.constantFrom(...SPECIAL_VALUES), fc.anything({ maxDepth: 2 }), fc.double(), fc.integer());
const numberish = fc.oneof(fc.integer({ min: -10, max: 70_000 }), fc.double(), anyValue);
/** TTLs that must be refused: 0, negative, NaN, infinities, fractions, huge, strings, non-numbers. */
const BAD_TTLS: unknown[] = [0, -1, -1000, 1, 999, 999.9, 1000.5, NaN, Infinity, -Infinity, MAX_TTL_MS + 1, 2 ** 53, 1e300, '1000', '30000', 1000n, true, {}, [], [1000], () => 1000];

function acquireOptions(): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.record(
      {
        ttlMs: fc.oneof(fc.integer({ min: 1000, max: 60_000 }), fc.constantFrom(...BAD_TTLS), numberish),
        waitMs: fc.oneof(fc.integer({ min: 0, max: 2_000 }), numberish),
        signal: fc.oneof(fc.constant(undefined), fc.constant(new AbortController().signal), fc.constant(AbortSignal.abort('x')), anyValue),
        autoRenew: fc.oneof(fc.boolean(), anyValue),
        renewAt: fc.oneof(fc.double({ min: 0, max: 1 }), anyValue),
        retryMinDelayMs: numberish,
        retryMaxDelayMs: numberish,
        onUnavailable: fc.oneof(fc.constantFrom('fail', 'proceed', 'FAIL', ''), anyValue),
        label: fc.oneof(nastyString, fc.string({ maxLength: 250 }), anyValue),
      },
      { requiredKeys: [] },
    ) },
    { weight: 1, arbitrary: anyValue },
  );
}

// ---------------------------------------------------------------------------------------------

describe('hostile input', () => {
  test('hostile - any key either round-trips on a real memcached (acquire, inspect, release, inspect null) or is refused', async () => {
    const locks = open();
    let worked = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 9, arbitrary: stringKey }, { weight: 1, arbitrary: anyValue }), async (key) => {
        const m = await typed('mutex(key)', () => locks.mutex(key as string));
        if (!m.ok) {
          assertInvalid(m, `key ${JSON.stringify(safeString(key)).slice(0, 60)}`);
          refused++;
          return;
        }
        const h = await typed('tryAcquire', () => m.value.tryAcquire({ ttlMs: 5_000 }));
        assert.ok(h.ok && h.value, `a valid key could not be acquired: ${h.ok ? 'held' : h.error.message}`);
        const info = await locks.inspect(key as string);
        assert.equal(info?.token, h.value.lease?.token, 'inspect shows the holder');
        assert.ok(typeof info?.owner?.pid === 'number');
        assert.equal(await h.value.release(), true);
        assert.equal(await locks.inspect(key as string), null, 'nothing left locked');
        worked++;
      }),
      { numRuns: NUM_RUNS },
    );
    assert.ok(worked > 0 && refused > 0, `both outcomes were exercised (${worked} worked, ${refused} refused)`);
  });

  test('hostile - distinct keys never share a lock (raw, base64 and hashed encodings)', async () => {
    const locks = open();
    await fc.assert(
      fc.asyncProperty(stringKey, stringKey, async (a, b) => {
        fc.pre(a !== b && a.length > 0 && b.length > 0 && a.isWellFormed() && b.isWellFormed() && a.length <= 65_536 && b.length <= 65_536);
        const ha = await locks.mutex(a).tryAcquire({ ttlMs: 5_000 });
        assert.ok(ha);
        try {
          const hb = await locks.mutex(b).tryAcquire({ ttlMs: 5_000 });
          assert.ok(hb, `${JSON.stringify(b).slice(0, 60)} was blocked by ${JSON.stringify(a).slice(0, 60)}`);
          assert.equal(await hb.release(), true);
        } finally {
          assert.equal(await ha.release(), true);
        }
      }),
      { numRuns: Math.ceil(NUM_RUNS / 3) },
    );
  });

  test('hostile - bad TTLs are refused with InvalidArgumentError by every entry point', async () => {
    const locks = open();
    const mem = new Locks({ store: new MemoryStore() });
    const store = new MemcachedStore({ servers: server.address, prefix: 'hostile:' });
    const key = uniqueKey('ttl');
    const held = await locks.mutex(uniqueKey('ttl-held')).acquire({ ttlMs: 5_000 });
    try {
      for (const ttl of BAD_TTLS) {
        const label = `ttlMs ${typeof ttl === 'bigint' ? `${ttl}n` : typeof ttl === 'function' ? 'function' : JSON.stringify(ttl) ?? String(ttl)}`;
        const fn = (): string => 'ran';
        const o = { ttlMs: ttl as number };
        assertInvalid(await typed('acquire', () => locks.mutex(key).acquire(o)), `acquire ${label}`);
        assertInvalid(await typed('tryAcquire', () => locks.mutex(key).tryAcquire(o)), `tryAcquire ${label}`);
        assertInvalid(await typed('withLock', () => locks.withLock(key, fn, o)), `withLock ${label}`);
        assertInvalid(await typed('withReentrantLock', () => locks.withReentrantLock(key, fn, o)), `withReentrantLock ${label}`);
        assertInvalid(await typed('mutex defaults', () => locks.mutex(key, o)), `mutex(key, defaults) ${label}`);
        assertInvalid(await typed('reentrant defaults', () => locks.reentrant(key, o)), `reentrant(key, defaults) ${label}`);
        assertInvalid(await typed('Locks defaults', () => new Locks({ store: new MemoryStore(), defaults: o })), `Locks defaults ${label}`);
        assertInvalid(await typed('wrap', () => locks.wrap(fn, { key: () => key, ...o })), `wrap ${label}`);
        assertInvalid(await typed('serializer', () => locks.serializer({ isConflict: () => false, ttlMs: ttl as number })), `serializer ${label}`);
        assertInvalid(await typed('memory acquire', () => mem.mutex(key).acquire(o)), `MemoryStore-backed acquire ${label}`);
        assertInvalid(await typed('extend', () => held.extend(ttl as number)), `extend ${label}`);
        assertInvalid(await typed('store.create', () => store.create(key, ttl as number, {})), `MemcachedStore.create ${label}`);
        assertInvalid(await typed('memory create', () => new MemoryStore().create(key, ttl as number, {})), `MemoryStore.create ${label}`);
        assertInvalid(await typed('maxTtlMs', () => new MemcachedStore({ servers: server.address, maxTtlMs: ttl as number })), `maxTtlMs ${label}`);
      }
      assert.equal(held.isHeld, true, 'refused extensions leave the lease alone');
      assert.equal(await locks.inspect(key), null, 'nothing was locked');
    } finally {
      await held.release();
      await store.close();
      await mem.close();
    }
  });

  test('hostile - acquire/tryAcquire/withLock options: accepted and released, or refused with a typed error', async () => {
    const locks = open();
    const mem = new Locks({ store: new MemoryStore() });
    try {
      await fc.assert(
        fc.asyncProperty(acquireOptions(), fc.constantFrom('acquire', 'tryAcquire', 'withLock', 'reentrant', 'memory'), async (options, entry) => {
          const key = uniqueKey('opts');
          const f = entry === 'memory' ? mem : locks;
          let ran = false;
          const o = await typed(entry, async () => {
            switch (entry) {
              case 'acquire':
              case 'memory':
                return (await f.mutex(key).acquire(options as never)).release();
              case 'tryAcquire':
                return (await f.mutex(key).tryAcquire(options as never))?.release();
              case 'withLock':
                return f.withLock(key, () => (ran = true), options as never);
              case 'reentrant':
                return f.withReentrantLock(key, () => (ran = true), options as never);
            }
          });
          if (!o.ok) assert.ok(!ran, 'refused options must not run the callback');
          assert.equal(await f.inspect(key), null, 'nothing left locked');
        }),
        { numRuns: NUM_RUNS },
      );
    } finally {
      await mem.close();
    }
  });

  test('hostile - Locks, MemcachedStore and MemoryStore options: built and usable, or refused with InvalidArgumentError', async () => {
    const storeOptions = fc.record(
      {
        servers: fc.oneof(fc.constant(evicting.address), fc.constant([evicting.address]), fc.constant([{ host: evicting.host, port: evicting.port }]), anyValue, nastyString),
        prefix: fc.oneof(nastyString, fc.string({ maxLength: 140 }), anyValue),
        connectTimeoutMs: numberish,
        requestTimeoutMs: numberish,
        reconnectMinDelayMs: numberish,
        reconnectMaxDelayMs: numberish,
        pushWakeups: fc.oneof(fc.boolean(), anyValue),
        releaseAsStore: fc.oneof(fc.boolean(), anyValue),
        refuseUnsafeServers: fc.oneof(fc.boolean(), anyValue),
        maxTtlMs: fc.oneof(fc.integer({ min: 1000, max: 120_000 }), numberish),
        onWarning: fc.oneof(fc.constant(() => {}), anyValue),
        clock: fc.oneof(fc.constant({ now: () => performance.now() }), anyValue),
        auth: fc.oneof(fc.constant(undefined), anyValue),
        handoffYieldMs: numberish,
        defaults: fc.oneof(fc.constant(undefined), acquireOptions()),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 9, arbitrary: storeOptions }, { weight: 1, arbitrary: anyValue }), async (options) => {
        const built = await typed('new Locks', () => new Locks(options as LocksOptions));
        if (!built.ok) {
          assertInvalid(built, 'Locks options');
          return;
        }
        const locks = built.value;
        locks.on('warning', () => {});
        locks.on('renewal-error', () => {});
        try {
          // whatever was accepted must work, or fail with a typed error: never a TypeError later
          const key = uniqueKey('ctor');
          const h = await typed('tryAcquire', () => locks.mutex(key).tryAcquire({ ttlMs: 2_000 }));
          if (h.ok && h.value) {
            await typed('release', () => h.value!.release());
            const left = await typed('inspect', () => locks.inspect(key));
            if (left.ok) assert.equal(left.value, null, 'nothing left locked');
          }
        } finally {
          await typed('close', () => locks.close());
        }
      }),
      { numRuns: Math.ceil(NUM_RUNS / 2) },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.record({ clock: anyValue }, { requiredKeys: [] }), anyValue), async (options) => {
        const built = await typed('new MemoryStore', () => new MemoryStore(options as never));
        if (!built.ok) return assertInvalid(built, 'MemoryStore options');
        const r = await typed('create', () => built.value.create(uniqueKey('mem'), 1_000, {}));
        const res = r.ok ? r.value : null;
        if (res?.acquired) {
          const lease = res.lease;
          await typed('delete', () => built.value.delete(lease));
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('hostile - wrap, serializer, withLock callbacks and key functions: typed errors only, nothing left locked', async () => {
    const locks = open();
    await fc.assert(
      fc.asyncProperty(anyValue, anyValue, fc.oneof(stringKey, anyValue), async (fn, keyFn, keyResult) => {
        const key = uniqueKey('wrap');
        await typed('withLock(fn)', () => locks.withLock(key, fn as never));
        await typed('wrap(fn)', () => locks.wrap(fn as never, { key: keyFn as never }));
        const wrapped = await typed('wrap', () => locks.wrap(() => 'ok', { key: () => keyResult as string }));
        if (wrapped.ok) {
          const r = await typed('wrapped()', () => wrapped.value());
          if (r.ok) assert.equal(r.value, 'ok');
          if (typeof keyResult === 'string' && keyResult.length > 0 && keyResult.length <= 65_536 && keyResult.isWellFormed()) {
            assert.ok(r.ok, 'a valid key from the key function works');
            assert.equal(await locks.inspect(keyResult), null);
          }
        }
        const ser = await typed('serializer', () => locks.serializer({ isConflict: keyFn as never, maxAttempts: fn as never }));
        if (ser.ok) {
          await typed('serializer.run', () => ser.value.run(key, fn as never));
          await typed('serializer.wrap', () => ser.value.wrap(fn as never, { key: keyFn as never }));
        }
        assert.equal(await locks.inspect(key), null, 'nothing left locked');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('hostile - inspect, forceRelease, extend and the address and key helpers refuse bad values with typed errors', async () => {
    const locks = open();
    await fc.assert(
      fc.asyncProperty(fc.oneof(stringKey, anyValue), anyValue, async (key, value) => {
        await typed('inspect', () => locks.inspect(key as string));
        await typed('forceRelease', () => locks.forceRelease(key as string));
        await typed('parseAddress', () => parseAddress(value));
        await typed('parseServerList', () => parseServerList(value as string));
        await typed('parseServerList(key)', () => parseServerList(key as string));
        await typed('encodeKey', () => encodeKey(value as string, key as string));
        const h = await locks.mutex(uniqueKey('ext')).acquire({ ttlMs: 5_000 });
        await typed('extend', () => h.extend(value as number));
        assert.equal(await h.release(), true, 'a refused extension leaves the lease releasable');
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('hostile - the findings of the fuzzing stay fixed (non-string prefixes, MemoryStore options)', async () => {
    for (const prefix of [Symbol('p'), {}, 5, null, undefined]) {
      assertInvalid(await typed('encodeKey', () => encodeKey(prefix as never, 'a')), `encodeKey prefix ${String(prefix)}`);
    }
    for (const options of [null, 5, 'x', true]) {
      assertInvalid(await typed('new MemoryStore', () => new MemoryStore(options as never)), `MemoryStore(${String(options)})`);
    }
  });

  test('hostile - keys, prefixes and labels cannot inject commands: a victim lock survives them all', async () => {
    const victimLocks = open();
    const victimKey = 'victim';
    const victim = await victimLocks.mutex(victimKey).acquire({ ttlMs: 30_000 });
    const canary = open({ prefix: '' });
    const canaryHandle = await canary.mutex('canary').acquire({ ttlMs: 30_000 });
    const payloads = [
      'a\r\nflush_all\r\n',
      'a\r\nflush_all',
      'a\nflush_all\n',
      'x\r\nmd hostile:victim\r\n',
      'x\r\nms hostile:victim 2 T-1\r\nxx\r\n',
      'x mn\r\nmd hostile:victim q\r\n',
      'x\r\n\r\nflush_all 0\r\nquit\r\n',
      'k b',
      'k T-1',
      '\u0000flush_all',
      'é\r\nflush_all\r\n'.repeat(30),
      'x'.repeat(300) + '\r\nflush_all\r\n',
    ];
    try {
      for (const p of payloads) {
        for (const [options, key] of [
          [{}, p],
          [{ prefix: p.slice(0, 128) }, 'k'],
          [{ defaults: { label: p.slice(0, 200) } }, 'k'],
        ] as const) {
          const locks = open({ prefix: 'hostile:', ...options });
          const h = await locks.mutex(key).acquire({ ttlMs: 5_000, label: p.slice(0, 200) });
          assert.equal((await locks.inspect(key))?.token, h.lease?.token);
          assert.equal((await locks.inspect(key))?.owner?.label, p.slice(0, 200));
          assert.equal(await h.release(), true);
          assert.equal(await locks.forceRelease(key), false, 'already free');
          assert.equal(await locks.inspect(key), null);
        }
      }
      assert.equal((await victimLocks.inspect(victimKey))?.token, victim.lease?.token, 'the victim lock survived');
      assert.equal((await canary.inspect('canary'))?.token, canaryHandle.lease?.token, 'nothing was flushed');
      assert.equal(victim.isHeld, true);
    } finally {
      await victim.release();
      await canaryHandle.release();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// fake servers

const STATS = 'STAT pid 4242\r\nSTAT uptime 100\r\nSTAT time 1800000000\r\nSTAT version 1.6.18\r\nEND\r\n';
const SETTINGS = 'STAT evictions off\r\nSTAT temp_lru no\r\nEND\r\n';

/**
 * A fake memcached: a correct handshake (stats, stats settings), then `answer` decides the reply
 * to each meta command line (`ms` data lines are skipped). null: no answer.
 */
function fakeMemcached(answer: (line: string, n: number) => string | Buffer | null): (socket: net.Socket, s: FakeServer) => void {
  return (socket, s) => {
    let skipData = false;
    let n = 0;
    replyWith((line) => {
      if (skipData) {
        skipData = false;
        return null;
      }
      if (line === 'stats') return STATS;
      if (line === 'stats settings') return SETTINGS;
      if (line.startsWith('ms ')) skipData = true;
      return answer(line, n++);
    })(socket, s);
  };
}

const opaqueOf = (line: string): string => /(?:^| )O(\d+)/.exec(line)?.[1] ?? '';

describe('hostile servers', () => {
  const fakes: FakeServer[] = [];
  after(async () => {
    await Promise.all(fakes.map((f) => f.close()));
  });

  async function against(answer: (line: string, n: number) => string | Buffer | null, what: string): Promise<void> {
    const fake = await FakeServer.start(fakeMemcached(answer));
    fakes.push(fake);
    const locks = new Locks({ servers: fake.address, requestTimeoutMs: 300, connectTimeoutMs: 300, pushWakeups: false, reconnectMaxDelayMs: 50 });
    locks.on('renewal-error', () => {});
    try {
      for (const attempt of ['tryAcquire', 'acquire', 'withLock', 'inspect', 'forceRelease'] as const) {
        const o = await typed(`${what}: ${attempt}`, async () => {
          const m = locks.mutex('k');
          if (attempt === 'tryAcquire') return (await m.tryAcquire())?.release();
          if (attempt === 'acquire') return (await m.acquire({ waitMs: 300 })).release();
          if (attempt === 'withLock') return locks.withLock('k', () => 1, { waitMs: 300 });
          if (attempt === 'inspect') return locks.inspect('k');
          return locks.forceRelease('k');
        });
        // a reply that is not a meta reply cannot be taken for a grant
        if (o.ok) assert.notEqual(attempt, 'withLock', `${what}: withLock ran under a lock the server never granted`);
      }
    } finally {
      await typed('close', () => locks.close());
    }
  }

  test('hostile - a server answering random bytes only produces typed errors', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }), async (bytes) => {
        await against(() => Buffer.from(bytes), 'random bytes');
      }),
      { numRuns: 25 },
    );
  });

  test('hostile - a server answering plausible but wrong replies only produces typed errors', async () => {
    const replies: ((line: string) => string)[] = [
      () => 'HD c5\r\n', // no opaque
      () => 'HD c5 O999\r\n', // wrong opaque
      (l) => `VA 2000000 c5 O${opaqueOf(l)}\r\n`, // oversized value announced
      (l) => `VA 5 c5 O${opaqueOf(l)}\r\nabcdefghij\r\n`, // value longer than announced
      (l) => `VA -1 O${opaqueOf(l)}\r\n`,
      (l) => `HD O${opaqueOf(l)}\r\n`, // a grant without a CAS
      (l) => `HD cabc O${opaqueOf(l)}\r\n`, // a non-numeric CAS
      (l) => `HD c-5 O${opaqueOf(l)}\r\n`,
      (l) => `HD c99999999999999999999999999 O${opaqueOf(l)}\r\n`,
      (l) => `EN O${opaqueOf(l)}\r\nEN O${opaqueOf(l)}\r\n`, // two replies to one request
      () => 'SERVER_ERROR out of memory storing object\r\n',
      () => 'CLIENT_ERROR bad command line format\r\n',
      () => 'ERROR\r\n',
      () => 'STORED\r\n',
      () => 'VALUE k 0 1\r\nx\r\nEND\r\n',
      () => 'x'.repeat(20_000) + '\r\n', // an endless line
      (l) => `HD c5 O${opaqueOf(l)}\n`, // LF without CR
      (l) => `ZZ O${opaqueOf(l)}\r\n`,
    ];
    for (const r of replies) await against((line) => r(line), `reply ${JSON.stringify(r('ms k O7')).slice(0, 50)}`);
  });

  test('hostile - a server that never answers, or answers the handshake with garbage: typed errors, no hang', async () => {
    await against(() => null, 'no answer to commands');
    for (const garbage of ['', 'STAT pid x\r\nEND\r\n', 'ERROR\r\n', 'VERSION 1\r\n', '\0\0\0\r\n']) {
      const fake = await FakeServer.start(
        replyWith((line) => (line.startsWith('stats') ? (garbage === '' ? null : garbage) : null)),
      );
      fakes.push(fake);
      const locks = new Locks({ servers: fake.address, requestTimeoutMs: 300, connectTimeoutMs: 300, pushWakeups: false });
      const o = await typed('acquire', () => locks.mutex('k').acquire({ waitMs: 200 }));
      assert.ok(!o.ok && o.error instanceof LockUnavailableError, `handshake ${JSON.stringify(garbage)}: ${o.ok ? 'acquired' : o.error.name}`);
      await typed('close', () => locks.close());
    }
  });
});

/** String(value) for messages, even for objects whose toString is not callable. */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return `[${typeof value}]`;
  }
}
