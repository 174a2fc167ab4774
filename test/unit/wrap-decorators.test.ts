/**
 * Function wrapping (`locks.wrap`) and the `@Locked` method decorator, in both the TC39 standard
 * form (compiled by tsx/esbuild: tsconfig has no experimentalDecorators) and the legacy form
 * (applied by hand, as TypeScript's legacy emit does). On the memory store.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { afterEach, describe, test } from 'node:test';

import { InvalidArgumentError, LockTimeoutError, Locked, Locks, MemoryStore, SKIP_LOCK } from '../../src/index.js';
import { FakeClock, uniqueKey } from '../helpers/util.js';

const opened: Locks[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((l) => l.close()));
});

function setup(clock?: FakeClock): { locks: Locks; store: MemoryStore } {
  const store = new MemoryStore(clock ? { clock } : {});
  const locks = new Locks({ store });
  opened.push(locks);
  return { locks, store };
}

const isInvalid = (pattern: RegExp) => (err: unknown) =>
  err instanceof InvalidArgumentError && err.code === 'ERR_INVALID_ARGUMENT' && pattern.test(err.message);

/** Resolves after every pending microtask and one macrotask turn. */
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('wrap', () => {
  test('wrap - each call runs under the lock its key function names', async () => {
    const { locks, store } = setup();
    const prefix = uniqueKey('wrap');
    const seen: (string | undefined)[] = [];
    async function place(id: number, qty: number): Promise<string> {
      const info = await store.inspect(`${prefix}:${id}`);
      seen.push(info?.token);
      return `${id}x${qty}`;
    }
    const locked = locks.wrap(place, { key: (id) => `${prefix}:${id}` });
    assert.equal(locked.name, 'place');
    assert.equal(locked.length, 2);
    assert.equal(await locked(7, 2), '7x2');
    assert.equal(seen.length, 1);
    assert.ok(seen[0], 'the lock was held while the function ran');
    assert.equal(await store.inspect(`${prefix}:7`), null, 'released afterwards');
    assert.equal(store.size, 0);
  });

  test('wrap - errors pass through and the lock is released', async () => {
    const { locks, store } = setup();
    const key = uniqueKey('wrap-err');
    const failing = locks.wrap(
      async () => {
        assert.equal(store.size, 1);
        throw new Error('inner failure');
      },
      { key: () => key },
    );
    await assert.rejects(failing(), /inner failure/);
    assert.equal(store.size, 0);
  });

  test('wrap - calls with one key run one at a time; other keys do not wait', async () => {
    const { locks } = setup();
    const prefix = uniqueKey('wrap-serial');
    let running = 0;
    let maxRunning = 0;
    const order: string[] = [];
    const work = locks.wrap(
      async (id: string, n: number) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        order.push(`${id}${n} start`);
        await tick();
        await tick();
        order.push(`${id}${n} end`);
        running--;
      },
      { key: (id) => `${prefix}:${id}`, waitMs: 10_000 },
    );
    await Promise.all([work('a', 1), work('a', 2), work('a', 3)]);
    assert.equal(maxRunning, 1, 'same key: never two at once');
    assert.deepEqual(order, ['a1 start', 'a1 end', 'a2 start', 'a2 end', 'a3 start', 'a3 end']);

    running = 0;
    maxRunning = 0;
    await Promise.all([work('b', 1), work('c', 1)]);
    assert.equal(maxRunning, 2, 'different keys run in parallel');
  });

  test('wrap - SKIP_LOCK runs the call unlocked', async () => {
    const { locks, store } = setup();
    const key = uniqueKey('skip');
    const sizes: number[] = [];
    const fn = locks.wrap(
      async (lock: boolean) => {
        sizes.push(store.size);
        return lock;
      },
      { key: (lock) => (lock ? key : SKIP_LOCK) },
    );
    assert.equal(await fn(false), false);
    assert.equal(await fn(true), true);
    assert.deepEqual(sizes, [0, 1]);
    // a skipped call does not wait for a holder either
    const held = await locks.mutex(key).acquire();
    assert.equal(await fn(false), false);
    await held.release();
  });

  test('wrap - this is preserved for the key function and the wrapped function', async () => {
    const { locks, store } = setup();
    const prefix = uniqueKey('this');
    const keyThis: unknown[] = [];
    const account = {
      id: 'acc-1',
      balance: 10,
      deposit: undefined as unknown as (amount: number) => Promise<number>,
    };
    account.deposit = locks.wrap(
      async function (this: typeof account, amount: number) {
        assert.ok(await store.inspect(`${prefix}:${this.id}`));
        this.balance += amount;
        return this.balance;
      },
      {
        key(this: unknown) {
          keyThis.push(this);
          return `${prefix}:${(this as typeof account).id}`;
        },
      },
    );
    assert.equal(await account.deposit(5), 15);
    assert.deepEqual(keyThis, [account]);
    assert.equal(account.balance, 15);
  });

  test('wrap - acquire options apply to every call', async () => {
    const clock = new FakeClock();
    const { locks, store } = setup(clock);
    const key = uniqueKey('wrap-ttl');
    const remaining: (number | null | undefined)[] = [];
    const fn = locks.wrap(async () => remaining.push((await store.inspect(key))?.remainingMs), { key: () => key, ttlMs: 4_000, autoRenew: false });
    await fn();
    assert.deepEqual(remaining, [4_000]);
    // waitMs from the options: a held key times out
    const held = await locks.mutex(key).acquire();
    const impatient = locks.wrap(async () => 'ran', { key: () => key, waitMs: 0 });
    await assert.rejects(impatient(), LockTimeoutError);
    await held.release();
    assert.equal(await impatient(), 'ran');
  });

  test("wrap - kind 'reentrant' lets a wrapped call re-enter the same key; 'mutex' does not", async () => {
    const { locks } = setup();
    const key = uniqueKey('wrap-reentrant');
    const depthOf = (kind: 'mutex' | 'reentrant') => {
      const fn: (depth: number) => Promise<number> = locks.wrap(async (depth: number) => (depth === 0 ? 0 : 1 + (await fn(depth - 1))), {
        key: () => key,
        kind,
        waitMs: 100,
      });
      return fn;
    };
    assert.equal(await depthOf('reentrant')(3), 3);
    await assert.rejects(depthOf('mutex')(1), LockTimeoutError);
    assert.equal(await locks.inspect(key), null);
  });

  test('wrap - bad usage gets InvalidArgumentError', async () => {
    const { locks, store } = setup();
    const fn = async (): Promise<void> => {};
    assert.throws(() => locks.wrap(42 as never, { key: () => 'k' }), isInvalid(/fn must be a function, got 42/));
    assert.throws(() => locks.wrap(fn, undefined as never), isInvalid(/options.key must be a function/));
    assert.throws(() => locks.wrap(fn, {} as never), isInvalid(/options.key must be a function returning the lock key, got undefined/));
    assert.throws(() => locks.wrap(fn, { key: 'k' } as never), isInvalid(/options.key must be a function/));
    assert.throws(() => locks.wrap(fn, { key: () => 'k', kind: 'rw' } as never), isInvalid(/kind must be "mutex" or "reentrant", got "rw"/));
    assert.throws(() => locks.wrap(fn, { key: () => 'k', ttlMs: 0 }), isInvalid(/ttlMs must be an integer/));
    assert.throws(() => locks.wrap(fn, { key: () => 'k', waitMs: -1 }), isInvalid(/waitMs must be an integer/));

    for (const bad of ['', 42, null, undefined, '\uD800']) {
      const w = locks.wrap(fn, { key: () => bad as string });
      await assert.rejects(w(), isInvalid(/key/), `key function returning ${String(bad)}`);
    }
    const throwing = locks.wrap(fn, {
      key: () => {
        throw new Error('no key');
      },
    });
    await assert.rejects(throwing(), /no key/);
    assert.equal(store.size, 0);
  });
});

describe('@Locked', () => {
  test('@Locked - standard decorator: methods run under the lock, this and name preserved', async () => {
    const { locks, store } = setup();
    const prefix = uniqueKey('std');

    class Orders {
      readonly log: string[] = [];
      constructor(readonly region: string) {}

      @Locked(locks, {
        // a key function may declare the type of its `this`
        key(this: Orders, id: string) {
          return `${prefix}:${this.region}:${id}`;
        },
      })
      async place(id: string, qty: number): Promise<string> {
        const info = await store.inspect(`${prefix}:${this.region}:${id}`);
        this.log.push(`${id} locked=${info !== null}`);
        return `${this.region}/${id}/${qty}`;
      }

      // the function form type-checks without an annotation (self is any) and with one
      @Locked((self) => self.locksOf(), { key: () => SKIP_LOCK })
      async unlocked(): Promise<number> {
        return store.size;
      }

      @Locked((self: Orders) => self.locksOf(), { key: () => SKIP_LOCK })
      async unlockedToo(): Promise<number> {
        return store.size;
      }

      locksOf(): Locks {
        return locks;
      }
    }

    const orders = new Orders('eu');
    assert.equal(Orders.prototype.place.name, 'place');
    assert.equal(await orders.place('o1', 3), 'eu/o1/3');
    assert.deepEqual(orders.log, ['o1 locked=true']);
    assert.equal(store.size, 0);
    assert.equal(await orders.unlocked(), 0);
    assert.equal(await orders.unlockedToo(), 0);

    // one key at a time across instances of the class
    let running = 0;
    let maxRunning = 0;
    class Counter {
      @Locked(locks, { key: () => `${prefix}:counter` })
      async bump(): Promise<void> {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await tick();
        running--;
      }
    }
    await Promise.all([new Counter().bump(), new Counter().bump(), new Counter().bump()]);
    assert.equal(maxRunning, 1);
  });

  test('@Locked - legacy decorator applied as experimentalDecorators emit does', async () => {
    const { locks, store } = setup();
    const prefix = uniqueKey('legacy');

    class Payments {
      calls = 0;
      constructor(readonly account: string) {}
      async pay(amount: number): Promise<string> {
        this.calls++;
        const info = await store.inspect(`${prefix}:${this.account}`);
        return `${this.account}:${amount}:${info !== null}`;
      }
    }
    const proto = Payments.prototype;
    const original = proto.pay;
    const descriptor = Object.getOwnPropertyDescriptor(proto, 'pay')!;
    const decorator = Locked(locks, {
      key(this: unknown) {
        return `${prefix}:${(this as Payments).account}`;
      },
    });
    const result = decorator(proto, 'pay', descriptor) as PropertyDescriptor | undefined;
    Object.defineProperty(proto, 'pay', result ?? descriptor);

    assert.notEqual(proto.pay, original, 'the method was replaced');
    assert.equal(proto.pay.name, 'pay');
    const p = new Payments('acc-9');
    assert.equal(await p.pay(12), 'acc-9:12:true');
    assert.equal(p.calls, 1);
    assert.equal(store.size, 0);
  });

  test("@Locked - kind 'reentrant': a locked method may call another locked on the same key", async () => {
    const { locks } = setup();
    const prefix = uniqueKey('dec-reentrant');

    class Ledger {
      constructor(readonly id: string) {}

      @Locked(locks, { key: (id: string) => `${prefix}:${id}`, kind: 'reentrant' })
      async transfer(id: string): Promise<string> {
        return `transfer(${await this.audit(id)})`;
      }

      @Locked(locks, { key: (id: string) => `${prefix}:${id}`, kind: 'reentrant' })
      async audit(id: string): Promise<string> {
        return `audit ${id}`;
      }

      @Locked(locks, { key: (id: string) => `${prefix}:${id}`, waitMs: 100 })
      async strictOuter(id: string): Promise<string> {
        return this.strictInner(id);
      }

      @Locked(locks, { key: (id: string) => `${prefix}:${id}`, waitMs: 100 })
      async strictInner(id: string): Promise<string> {
        return id;
      }
    }

    const ledger = new Ledger('l1');
    assert.equal(await ledger.transfer('x'), 'transfer(audit x)');
    await assert.rejects(ledger.strictOuter('y'), LockTimeoutError, 'a mutex method calling another on the same key waits for itself');
    assert.equal(await locks.inspect(`${prefix}:x`), null);
    assert.equal(await locks.inspect(`${prefix}:y`), null);
  });

  test('@Locked - bad usage gets InvalidArgumentError', async () => {
    const { locks } = setup();
    assert.throws(() => Locked(42 as never, { key: () => 'k' }), isInvalid(/@Locked needs a Locks instance or a function returning one, got 42/));
    assert.throws(() => Locked(locks, {} as never), isInvalid(/@Locked options.key must be a function/));
    assert.throws(() => Locked(locks, { key: () => 'k', ttlMs: 1.5 }), isInvalid(/ttlMs must be an integer/));
    assert.throws(() => Locked(locks, { key: () => 'k', kind: 'shared' } as never), isInvalid(/kind must be "mutex" or "reentrant"/));

    const decorator = Locked(locks, { key: () => 'k' });
    // standard decorators on something other than a method
    for (const kind of ['field', 'getter', 'setter', 'accessor', 'class']) {
      assert.throws(() => decorator(function () {}, { kind, name: 'x' }), isInvalid(new RegExp(`apply to methods, not to a ${kind}`)), kind);
    }
    // legacy decorators on something other than a method
    assert.throws(() => decorator({}, 'value', { value: 42, writable: true }), isInvalid(/value is not a method/));
    assert.throws(() => decorator({}, 'getter', { get: () => 1 }), isInvalid(/getter is not a method/));

    // a locks function that does not return a Locks instance: the call rejects
    class Broken {
      @Locked(() => ({}) as Locks, { key: () => 'k' })
      async run(): Promise<void> {}
    }
    await assert.rejects(new Broken().run(), isInvalid(/the locks function returned an object, not a Locks instance/));
    class Throwing {
      @Locked(
        () => {
          throw new Error('no locks here');
        },
        { key: () => 'k' },
      )
      async run(): Promise<void> {}
    }
    let p: Promise<void> | undefined;
    assert.doesNotThrow(() => {
      p = new Throwing().run();
    }, 'a decorated method rejects, never throws');
    await assert.rejects(p!, /no locks here/);
  });

  test('decorators - a Locks from the other build (CommonJS vs ESM) is accepted', async () => {
    // one application can load both builds (an ESM app with a CommonJS dependency): `instanceof` fails across them
    const cjs = createRequire(import.meta.url)('../../dist/cjs/index.js') as typeof import('../../src/index.js');
    const other = new cjs.Locks({ store: new cjs.MemoryStore() });
    assert.notEqual(cjs.Locks as unknown, Locks as unknown, 'two classes: instanceof fails across them');
    try {
      class Jobs {
        @Locked(other, { key: () => 'nightly' })
        async run(): Promise<boolean> {
          return (await other.inspect('nightly')) !== null;
        }

        @Locked(() => other, { key: () => 'nightly' })
        async runToo(): Promise<boolean> {
          return (await other.inspect('nightly')) !== null;
        }
      }
      assert.equal(await new Jobs().run(), true, 'ran under the other build\'s lock');
      assert.equal(await new Jobs().runToo(), true);
    } finally {
      await other.close();
    }
  });
});
