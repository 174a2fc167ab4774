import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import {
  InvalidArgumentError,
  Locks,
  LockTimeoutError,
  LockUnavailableError,
  MemoryStore,
  SKIP_LOCK,
  Serialized,
  type Serializer,
} from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached-server.js'

class Conflict extends Error {}

/** An optimistic store kept in this process, so it survives memcached going away. */
class VersionedCell {
  value = 0
  version = 0
  async read(): Promise<{ value: number; version: number }> {
    await new Promise((r) => setImmediate(r))
    return { value: this.value, version: this.version }
  }
  async write(value: number, version: number): Promise<void> {
    await new Promise((r) => setImmediate(r))
    if (version !== this.version) throw new Conflict('stale version')
    this.value = value
    this.version++
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
let unique = 0
const key = (name: string) => `ser-${process.pid}-${++unique}-${name}`

async function increment(cell: VersionedCell, workMs: number): Promise<void> {
  const { value, version } = await cell.read()
  await sleep(workMs)
  await cell.write(value + 1, version)
}

describe('serializer on memcached', () => {
  let server: MemcachedServer
  before(async () => {
    server = await MemcachedServer.start({ args: ['-M'] })
  })
  after(async () => {
    await server?.stop()
  })

  /** A factory on the suite's server for the length of `fn`, closed afterwards. */
  async function withLocks(fn: (locks: Locks) => Promise<void>): Promise<void> {
    const locks = new Locks({ servers: server.address })
    try {
      await fn(locks)
    } finally {
      await locks.close()
    }
  }

  test('serializer - writers of one object queue: zero conflicts while the lock holds', async () => {
    await withLocks(async (locks) => {
      const cell = new VersionedCell()
      const serializer = locks.serializer({ isConflict: (e) => e instanceof Conflict })
      const k = key('queue')
      await Promise.all(
        Array.from({ length: 6 }, async () => {
          for (let i = 0; i < 8; i++) await serializer.run(k, () => increment(cell, 2))
        }),
      )
      const s = serializer.stats()
      assert.equal(cell.value, 48)
      assert.equal(s.conflicts, 0)
      assert.equal(s.runs, 48)
      assert.equal(s.succeeded, 48)
      assert.equal(s.unlockedRuns, 0)
      assert.ok(s.lockWaits > 0, 'concurrent writers had to wait for each other')
      assert.ok(s.workMs > 0 && s.waitMs >= 0)
    })
  })

  test('serializer - without the serializer the same writers conflict (the storm it removes)', async () => {
    const cell = new VersionedCell()
    let conflicts = 0
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        for (let i = 0; i < 8; i++) {
          for (;;) {
            try {
              await increment(cell, 2)
              break
            } catch (err) {
              if (!(err instanceof Conflict)) throw err
              conflicts++
            }
          }
        }
      }),
    )
    assert.equal(cell.value, 48)
    assert.ok(conflicts > 0)
  })

  test('serializer - a conflict retry keeps the lock: no other writer runs between the attempts', async () => {
    await withLocks(async (locks) => {
      const serializer = locks.serializer({ isConflict: (e) => e instanceof Conflict, retryMinDelayMs: 20, retryMaxDelayMs: 20 })
      const k = key('retry')
      const log: string[] = []
      let failFirst = true
      const a = serializer.run(k, async (ctx) => {
        log.push(`A${ctx.attempt}:start`)
        assert.equal(ctx.locked, true)
        await sleep(30)
        log.push(`A${ctx.attempt}:end`)
        if (failFirst) {
          failFirst = false
          throw new Conflict('injected')
        }
      })
      await sleep(5)
      const b = serializer.run(k, async () => {
        log.push('B:start')
        log.push('B:end')
      })
      await Promise.all([a, b])
      assert.deepEqual(log, ['A1:start', 'A1:end', 'A2:start', 'A2:end', 'B:start', 'B:end'])
      const s = serializer.stats()
      assert.equal(s.conflicts, 1)
      assert.equal(s.retries, 1)
    })
  })

  test('serializer - conflicts past maxAttempts are rethrown, other errors at once', async () => {
    await withLocks(async (locks) => {
      const serializer = locks.serializer({ isConflict: (e) => e instanceof Conflict, maxAttempts: 3, retryMinDelayMs: 0, retryMaxDelayMs: 0 })
      let calls = 0
      await assert.rejects(
        serializer.run(key('max'), () => {
          calls++
          throw new Conflict('always')
        }),
        Conflict,
      )
      assert.equal(calls, 3)
      await assert.rejects(
        serializer.run(key('other'), () => {
          throw new RangeError('not a conflict')
        }),
        RangeError,
      )
      const s = serializer.stats()
      assert.equal(s.failed, 2)
      assert.equal(s.conflicts, 3)
      assert.equal(s.retries, 2)
      assert.equal(await locks.inspect(key('max')), null, 'nothing left locked')
    })
  })

  test('serializer - a throwing isConflict or event listener cannot hide the error or skew the counters', async () => {
    await withLocks(async (locks) => {
      const serializer = locks.serializer({
        isConflict: () => {
          throw new TypeError('isConflict is broken')
        },
      })
      const original = new RangeError('the store said no')
      await assert.rejects(
        serializer.run(key('isconflict'), () => {
          throw original
        }),
        (err: unknown) => err === original,
      )
      assert.deepEqual([serializer.stats().runs, serializer.stats().failed], [1, 1])

      const retrying = locks.serializer({ isConflict: (e) => e instanceof Conflict, retryMinDelayMs: 0, retryMaxDelayMs: 0 })
      retrying.on('conflict', () => {
        throw new Error('a broken listener')
      })
      const warnings: string[] = []
      const onWarning = (w: Error): void => void warnings.push(w.message)
      process.on('warning', onWarning)
      try {
        let attempts = 0
        const result = await retrying.run(key('listener'), () => {
          if (++attempts === 1) throw new Conflict('first try')
          return 'done'
        })
        assert.equal(result, 'done')
        assert.deepEqual([retrying.stats().conflicts, retrying.stats().succeeded], [1, 1])
        await sleep(10)
        assert.ok(warnings.some((m) => m.includes("'conflict' listener threw")), warnings.join('; '))
      } finally {
        process.off('warning', onWarning)
      }
    })
  })

  describe('serializer batches', () => {
    /** Counts the leases a factory takes. */
    function countAcquired(locks: Locks): { n: number } {
      const c = { n: 0 }
      locks.on('acquired', () => c.n++)
      return c
    }

    /** A counted factory, a fresh cell and a serializer with these batch limits. */
    function batchSetup(locks: Locks, batch: { maxRuns: number; maxMs: number } | false) {
      return {
        acquired: countAcquired(locks),
        cell: new VersionedCell(),
        serializer: locks.serializer({ isConflict: (e) => e instanceof Conflict, batch }),
      }
    }

    test('serializer batch - runs queued in this process take the lease over: fewer acquisitions, same result', async () => {
      await withLocks(async (locks) => {
        const { acquired, cell, serializer } = batchSetup(locks, { maxRuns: 5, maxMs: 10_000 })
        const k = key('batch')
        const tokens = new Set<bigint>()
        await Promise.all(
          Array.from({ length: 6 }, async () => {
            for (let i = 0; i < 5; i++) {
              await serializer.run(k, async (ctx) => {
                assert.equal(ctx.locked, true)
                tokens.add(ctx.fencingToken)
                await increment(cell, 1)
              })
            }
          }),
        )
        const s = serializer.stats()
        assert.equal(cell.value, 30)
        assert.equal(s.conflicts, 0)
        assert.equal(s.succeeded, 30)
        assert.ok(s.batchedRuns > 0, 'some runs took over a held lease')
        assert.equal(acquired.n, 30 - s.batchedRuns, 'every run either acquired or took a lease over')
        assert.ok(acquired.n >= 30 / 5, `at most maxRuns runs per lease (${acquired.n} leases)`)
        assert.equal(tokens.size, acquired.n, 'runs of one batch share its fencing token')
        assert.equal(await locks.inspect(k), null, 'released once the last run ended')
      })
    })

    test('serializer batch - runs started together fill one batch after another: ceil(runs / maxRuns) leases', async () => {
      await withLocks(async (locks) => {
        const { acquired, cell, serializer } = batchSetup(locks, { maxRuns: 10, maxMs: 10_000 })
        const k = key('batches')
        await Promise.all(Array.from({ length: 35 }, () => serializer.run(k, () => increment(cell, 1))))
        assert.equal(cell.value, 35)
        assert.equal(acquired.n, 4, 'the runs queued when a batch ended formed the next batch together')
        assert.equal(serializer.stats().batchedRuns, 31)
        assert.equal(await locks.inspect(k), null)
      })
    })

    test('serializer batch - batch: false releases after every run', async () => {
      await withLocks(async (locks) => {
        const { acquired, cell, serializer } = batchSetup(locks, false)
        const k = key('nobatch')
        await Promise.all(Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 3; i++) await serializer.run(k, () => increment(cell, 1))
        }))
        assert.equal(cell.value, 12)
        assert.equal(serializer.stats().batchedRuns, 0)
        assert.equal(acquired.n, 12)
      })
    })

    test('serializer batch - an uncontended run releases before it resolves', async () => {
      await withLocks(async (locks) => {
        const serializer = locks.serializer({ isConflict: () => false })
        const k = key('solo')
        for (let i = 0; i < 3; i++) {
          await serializer.run(k, () => undefined)
          assert.equal(await locks.inspect(k), null)
        }
        assert.equal(serializer.stats().batchedRuns, 0)
      })
    })

    test('serializer batch - contended: a batch ends after maxMs and the other process gets its turn', async () => {
      // two factories: two processes as far as the locks are concerned, three writers in each
      const a = new Locks({ servers: server.address })
      const b = new Locks({ servers: server.address })
      try {
        const cell = new VersionedCell()
        const opts = { isConflict: (e: unknown) => e instanceof Conflict, batch: { maxMs: 20 } }
        const sa = a.serializer(opts)
        const sb = b.serializer(opts)
        const k = key('twoproc')
        const order: string[] = []
        const writer = (s: Serializer, name: string) => async () => {
          for (let i = 0; i < 15; i++) {
            await s.run(k, async () => {
              order.push(name)
              await increment(cell, 1)
            })
          }
        }
        await Promise.all([...[1, 2, 3].map(() => writer(sa, 'a')()), ...[1, 2, 3].map(() => writer(sb, 'b')())])
        assert.equal(cell.value, 90)
        assert.equal(sa.stats().conflicts + sb.stats().conflicts, 0)
        assert.ok(sa.stats().batchedRuns + sb.stats().batchedRuns > 0, 'writers took over held leases')
        // neither process waits for the other to finish: the turn changes hands several times
        const switches = order.filter((w, i) => i > 0 && w !== order[i - 1]).length
        assert.ok(switches >= 2, `the lock changed hands ${switches} times: ${order.join('')}`)
        await sleep(20)
        assert.equal(await a.inspect(k), null, 'nothing left locked')
      } finally {
        await Promise.all([a.close(), b.close()])
      }
    })

    test('serializer batch - contended: a writer keeps the lease for its next run of the same turn', async () => {
      const a = new Locks({ servers: server.address })
      const b = new Locks({ servers: server.address })
      try {
        const cell = new VersionedCell()
        const sa = a.serializer({ isConflict: (e: unknown) => e instanceof Conflict, batch: { maxMs: 5000, maxRuns: 10 } })
        const k = key('linger')
        // b holds the key first, so a's first attempt finds it taken (a has seen contention)
        const held = await b.mutex(k).acquire()
        const first = sa.run(k, () => increment(cell, 1))
        await sleep(30)
        await held.release()
        await first
        const acquired = countAcquired(a)
        for (let i = 0; i < 5; i++) await sa.run(k, () => increment(cell, 1))
        assert.equal(cell.value, 6)
        assert.equal(sa.stats().batchedRuns, 5, 'each next run took the kept lease over')
        assert.equal(acquired.n, 0)
        // kept only for the turn: released once no run follows
        await sleep(20)
        assert.equal(await b.inspect(k), null)
      } finally {
        await Promise.all([a.close(), b.close()])
      }
    })
  })
})

describe('serializer when memcached goes away', () => {
  test('serializer - soft mode: memcached stopped mid-run, every update still lands exactly once, counted as unlocked', async () => {
    const server = await MemcachedServer.start({ args: ['-M'] })
    const locks = new Locks({ servers: server.address, connectTimeoutMs: 300, requestTimeoutMs: 300 })
    locks.on('renewal-error', () => {})
    try {
      const cell = new VersionedCell()
      const serializer = locks.serializer({ isConflict: (e) => e instanceof Conflict, maxAttempts: 1000, waitMs: 2000, retryMaxDelayMs: 5 })
      const unlocked: unknown[] = []
      serializer.on('unlocked', (_k: string, cause: unknown) => unlocked.push(cause))
      const k = key('soft')
      let done = 0
      const killed = (async () => {
        while (done < 20) await sleep(2)
        await server.kill()
      })()
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 20; i++) {
            await serializer.run(k, () => increment(cell, 1))
            done++
          }
        }),
      )
      await killed
      const s = serializer.stats()
      assert.equal(cell.value, 80, 'every update landed exactly once')
      assert.equal(s.succeeded, 80)
      assert.ok(s.unlockedRuns > 0, 'runs after the kill went ahead unlocked')
      assert.equal(unlocked.length, s.unlockedRuns, 'each unlocked run was reported')
    } finally {
      await locks.close()
      await server.stop()
    }
  })

  test('serializer - strict mode refuses clearly when memcached is unreachable', async () => {
    const server = await MemcachedServer.start({ args: ['-M'] })
    const address = server.address
    await server.stop()
    const locks = new Locks({ servers: address, connectTimeoutMs: 300 })
    try {
      const serializer = locks.serializer({ isConflict: (e) => e instanceof Conflict, mode: 'strict' })
      let ran = false
      await assert.rejects(
        serializer.run(key('strict'), () => {
          ran = true
        }),
        (err: unknown) => err instanceof LockUnavailableError && err.code === 'ERR_LOCK_UNAVAILABLE',
      )
      assert.equal(ran, false)
      assert.equal(serializer.stats().failed, 1)
    } finally {
      await locks.close()
    }
  })
})

describe('serializer forms (memory store)', () => {
  test('serializer - wrap: key from arguments and this, SKIP_LOCK runs without the serializer', async () => {
    const locks = new Locks({ store: new MemoryStore() })
    const serializer = locks.serializer({ isConflict: () => false })
    const seen: string[] = []
    const save = serializer.wrap(
      async function (this: { tag: string }, id: string) {
        seen.push(`${this.tag}:${id}`)
        return id.length
      },
      { key: function (this: unknown, id: string) { return id === 'skip' ? SKIP_LOCK : `doc:${(this as { tag: string }).tag}:${id}` } },
    )
    const obj = { tag: 't', save }
    assert.equal(await obj.save('abc'), 3)
    assert.equal(await obj.save('skip'), 4)
    assert.deepEqual(seen, ['t:abc', 't:skip'])
    assert.equal(serializer.stats().runs, 1, 'the skipped call did not go through the serializer')
    await locks.close()
  })

  test('serializer - @Serialized decorator (standard) retries conflicts under the lock', async () => {
    const locks = new Locks({ store: new MemoryStore() })
    const serializer = locks.serializer({ isConflict: (e) => e instanceof Conflict, retryMinDelayMs: 0, retryMaxDelayMs: 0 })
    const cell = new VersionedCell()
    class Repo {
      readonly serializer = serializer
      @Serialized(serializer, { key: (id: string) => `cell:${id}` })
      async bump(id: string): Promise<string> {
        await increment(cell, 1)
        return id
      }

      // the serializer taken from this, with and without a type annotation
      @Serialized((self) => self.serializer, { key: (id: string) => `cell:${id}` })
      async bumpToo(id: string): Promise<string> {
        await increment(cell, 1)
        return id
      }

      @Serialized((self: Repo) => self.serializer, { key: (id: string) => `cell:${id}` })
      async bumpThree(id: string): Promise<string> {
        await increment(cell, 1)
        return id
      }
    }
    const repo = new Repo()
    const results = await Promise.all(Array.from({ length: 5 }, () => repo.bump('x')))
    assert.deepEqual(results, ['x', 'x', 'x', 'x', 'x'])
    assert.deepEqual(await Promise.all([repo.bumpToo('x'), repo.bumpThree('x')]), ['x', 'x'])
    assert.equal(cell.value, 7)
    assert.equal(serializer.stats().conflicts, 0)
    await locks.close()
  })

  test('serializer - @Serialized as a legacy decorator, serializer taken from this', async () => {
    const locks = new Locks({ store: new MemoryStore() })
    class Repo {
      serializer: Serializer = locks.serializer({ isConflict: () => false })
      async save(id: string): Promise<string> {
        return `saved ${id}`
      }
    }
    const desc = Object.getOwnPropertyDescriptor(Repo.prototype, 'save') as PropertyDescriptor
    const decorated = Serialized((self) => (self as Repo).serializer, { key: (id: string) => id })(Repo.prototype, 'save', desc)
    Object.defineProperty(Repo.prototype, 'save', decorated)
    const repo = new Repo()
    assert.equal(await repo.save('a'), 'saved a')
    assert.equal(repo.serializer.stats().runs, 1)
    await locks.close()
  })

  test('serializer - bad arguments are typed errors', async () => {
    const locks = new Locks({ store: new MemoryStore() })
    assert.throws(() => locks.serializer({} as never), InvalidArgumentError)
    assert.throws(() => locks.serializer({ isConflict: () => false, maxAttempts: 0 }), /maxAttempts must be an integer from 1/)
    assert.throws(() => locks.serializer({ isConflict: () => false, mode: 'lax' as never }), /mode must be "soft" or "strict"/)
    assert.throws(() => locks.serializer({ isConflict: () => false, ttlMs: 10 }), /ttlMs must be an integer/)
    assert.throws(() => locks.serializer({ isConflict: () => false, batch: 'yes' as never }), /batch must be false or an object/)
    assert.throws(() => locks.serializer({ isConflict: () => false, batch: { maxRuns: 0 } }), /batch.maxRuns must be an integer from 1/)
    assert.throws(() => locks.serializer({ isConflict: () => false, batch: { maxMs: -1 } }), /batch.maxMs must be an integer from 0/)
    const s = locks.serializer({ isConflict: () => false })
    await assert.rejects(s.run('k', 'nope' as never), InvalidArgumentError)
    await assert.rejects(s.run('', async () => 1), InvalidArgumentError)
    assert.throws(() => s.wrap(async () => 1, {} as never), InvalidArgumentError)
    for (const bad of [null, {}, locks]) {
      assert.throws(() => Serialized(bad as never, { key: () => 'k' }), /@Serialized needs a Serializer or a function returning one/)
    }
    await locks.close()
  })

  test('serializer - a strict run that times out queued behind a batch reports the whole wait', async () => {
    const locks = new Locks({ store: new MemoryStore() })
    const s = locks.serializer({ isConflict: () => false, mode: 'strict', waitMs: 100 })
    let release!: () => void
    const first = s.run('slow', () => new Promise<void>((resolve) => (release = resolve)))
    const queued = s.run('slow', () => 'never')
    await assert.rejects(queued, (err: unknown) => {
      assert.ok(err instanceof LockTimeoutError, String(err))
      assert.equal(err.waitMs, 100)
      return true
    })
    release()
    await first
    await locks.close()
  })
})
