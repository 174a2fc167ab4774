import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, test } from 'node:test'
import { encodeKey, Locks, LockUnavailableError, MemcachedClient, MemcachedStore, parseServerList, type LockHandle } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached-server.js'
import { TcpProxy } from '../helpers/tcp-proxy.js'
import { eventually, uniqueKey, sleep, within } from '../helpers/util.js'

async function startServers(n: number): Promise<MemcachedServer[]> {
  return Promise.all(Array.from({ length: n }, () => MemcachedServer.start({ args: ['-M'] })))
}

/** Waits until servers may vote in quorum mode: reported uptime (about 2 s at start) >= server TTL of 1000 ms (3 s) + 3 s. */
const VOTING_AGE_MS = 4300

/**
 * Waits until a quorum lease has `n` parts. A lease is granted once a majority answered; a
 * proxied member's grant may come a few ms later and join it, and a test that cuts that member
 * off first would see a lease of fewer parts than it meant (the grant then never reaches us).
 */
async function untilParts(h: LockHandle, n: number): Promise<void> {
  // `parts` is internal to QuorumStore's lease
  await eventually(async () => assert.equal((h.lease as unknown as { parts: ReadonlyMap<unknown, unknown> }).parts.size, n), 2_000, 5)
}

/**
 * Waits until every server reports an uptime of at least 6 s, so each votes on a 1000 ms TTL
 * (server TTL 3 s + 3 s). memcached's uptime ticks in whole seconds, a little late: a fixed
 * sleep of VOTING_AGE_MS sometimes left one server at 5, out of the vote (a lease of two parts
 * where the test meant three).
 */
async function untilVoting(servers: readonly MemcachedServer[]): Promise<void> {
  await sleep(VOTING_AGE_MS)
  await eventually(async () => {
    for (const server of servers) {
      const c = new MemcachedClient({ servers: parseServerList(server.address) })
      try {
        const uptime = Number((await c.connections[0]!.stats()).uptime)
        assert.ok(uptime >= 6, `${server.address} has been up for ${uptime} s`)
      } finally {
        await c.close()
      }
    }
  }, 5_000, 100)
}

/**
 * Three voting servers, those at the indexes `proxied` reached through a TcpProxy (in that
 * order), and a quorum factory on them with 300 ms timeouts that records the keys it reports
 * lost. `stop()` closes all of it.
 */
async function proxiedQuorum(proxied: readonly number[]): Promise<{
  servers: MemcachedServer[]
  proxies: TcpProxy[]
  a: Locks
  lost: string[]
  stop: () => Promise<void>
}> {
  const servers = await startServers(3)
  const proxies = await Promise.all(proxied.map((i) => TcpProxy.start({ host: '127.0.0.1', port: servers[i]!.port })))
  await untilVoting(servers)
  const addresses = servers.map((s, i) => (proxied.includes(i) ? proxies[proxied.indexOf(i)]!.address : s.address))
  const a = new Locks({ servers: addresses, quorum: true, maxTtlMs: 1000, connectTimeoutMs: 300, requestTimeoutMs: 300, onWarning: () => {} })
  a.on('renewal-error', () => {})
  const lost: string[] = []
  a.on('lost', (key: string) => lost.push(key))
  const stop = async (): Promise<void> => {
    for (const p of proxies) p.blackHole(false)
    await a.close()
    for (const p of proxies) await p.close()
    for (const s of servers) await s.stop()
  }
  return { servers, proxies, a, lost, stop }
}

/** The next time `locks` reports the server at `address` down (a request to it timed out and its connection dropped). */
function nextDown(locks: Locks, address: string, what: string): Promise<void> {
  const down = new Promise<void>((resolve) => {
    const onState = (name: string, state: string): void => {
      if (name !== address || state !== 'down') return
      locks.off('server-state', onState)
      resolve()
    }
    locks.on('server-state', onState)
  })
  return within(down, 3_000, what)
}

describe('sharded mode (3 servers)', () => {
  let servers: MemcachedServer[]
  before(async () => {
    servers = await startServers(3)
  })
  after(async () => {
    for (const s of servers ?? []) await s.stop()
  })

  test('sharded - killing one server fails only the keys it owned; no key moves to another server', async () => {
    const victim = servers[1] as MemcachedServer
    const locks = new Locks({ servers: servers.map((s) => s.address), connectTimeoutMs: 300, requestTimeoutMs: 500, onWarning: () => {} })
    locks.on('renewal-error', () => {})
    try {
      const keys = Array.from({ length: 60 }, (_, i) => uniqueKey(`shard-${i}`))
      const handles = new Map<string, LockHandle>()
      const owner = new Map<string, string>()
      for (const k of keys) {
        handles.set(k, await locks.mutex(k, { ttlMs: 5000 }).acquire())
        owner.set(k, (await locks.inspect(k))!.server)
      }
      const byServer = new Set(owner.values())
      assert.equal(byServer.size, 3, 'keys are spread over every server')
      const lostKeys = new Set<string>()
      locks.on('lost', (k: string) => lostKeys.add(k))
      await victim.kill()
      await sleep(100)
      for (const k of keys) {
        const onVictim = owner.get(k) === victim.address
        const h = handles.get(k) as LockHandle
        if (onVictim) {
          assert.equal(h.state, 'lost', `${k}: its lease on the killed server is reported lost`)
          assert.ok(lostKeys.has(k))
          // never re-mapped: acquiring it again fails instead of landing on a live server
          await assert.rejects(locks.mutex(k).acquire({ waitMs: 200 }), LockUnavailableError)
          await assert.rejects(locks.inspect(k))
        } else {
          assert.equal(h.state, 'held', `${k} on a live server is unaffected`)
          assert.equal(await locks.mutex(k).tryAcquire(), null, `${k} still has exactly one owner`)
          assert.equal(await h.release(), true)
        }
      }
      const health = locks.health()
      // down, or trying again in the background (a reconnect attempt to a dead port is 'connecting'
      // until the refusal is read: under load, health() can run in between)
      assert.match(String(health.find((s) => s.server === victim.address)?.state), /^(down|connecting)$/)
      assert.equal(health.filter((s) => s.state === 'ready').length, 2)
    } finally {
      await locks.close()
      await victim.restart() // also after a failure: the next tests use every server
    }
  })

  test('sharded - a lock and its waiting line live on one server: a dead server does not slow the others', async () => {
    const victim = servers[2] as MemcachedServer
    const locks = new Locks({ servers: servers.map((s) => s.address), connectTimeoutMs: 300, requestTimeoutMs: 500, onWarning: () => {} })
    const store = locks.store as MemcachedStore
    try {
      const keys = Array.from({ length: 40 }, (_, i) => uniqueKey(`line-${i}`))
      const owner = new Map<string, string>()
      for (const k of keys) {
        const h = await locks.mutex(k).acquire()
        owner.set(k, (await locks.inspect(k))!.server)
        await h.release()
      }
      await victim.kill()
      await sleep(100)
      for (const k of keys.filter((key) => owner.get(key) !== victim.address)) {
        // the ticket, the served counter and the waiters probe of a key on a live server all answer
        assert.ok(Number.isInteger(await store.enterQueue(k)), `${k}: ticket from its own server`)
        store.markServed(k, 1)
        assert.equal(typeof (await store.hasWaiters(k)), 'boolean', `${k}: waiters probe on its own server`)
      }
    } finally {
      await locks.close()
      await victim.restart()
    }
  })

  test('sharded - 100k keys over 5 servers: each within +-10% of even; removing one moves <= 25%', async () => {
    const five = ['127.0.0.1:21001', '127.0.0.1:21002', '127.0.0.1:21003', '127.0.0.1:21004', '127.0.0.1:21005']
    const a = new MemcachedClient({ servers: parseServerList(five) })
    const b = new MemcachedClient({ servers: parseServerList(five.slice(0, 4)) })
    const counts = new Map<string, number>()
    let moved = 0
    for (let i = 0; i < 100_000; i++) {
      const k = encodeKey('lock:', `order-${i}`)
      const s1 = a.connectionFor(k).name
      counts.set(s1, (counts.get(s1) ?? 0) + 1)
      if (b.connectionFor(k).name !== s1) moved++
    }
    for (const [server, n] of counts) assert.ok(n >= 18_000 && n <= 22_000, `${server} got ${n} of 100000 keys`)
    assert.ok(moved <= 25_000, `${moved} keys moved`)
    assert.equal(moved, counts.get(five[4] as string), 'only the removed server\'s keys moved')
    await a.close()
    await b.close()
  })
})

describe('quorum mode', () => {
  test('quorum (5 servers) - losing a minority keeps every lock safe and usable', async () => {
    const servers = await startServers(5)
    await untilVoting(servers)
    const locks = new Locks({ servers: servers.map((s) => s.address), quorum: true, maxTtlMs: 1000, defaults: { ttlMs: 1000 }, connectTimeoutMs: 2000, requestTimeoutMs: 1500, onWarning: () => {} })
    locks.on('renewal-error', () => {})
    try {
      const k = uniqueKey('q5')
      const h = await locks.mutex(k, { ttlMs: 1000, autoRenew: true }).acquire()
      await servers[0]!.kill()
      await servers[3]!.kill()
      await sleep(100)
      assert.equal(h.state, 'held', 'a lease on 5 survives the loss of 2')
      await h.extend()
      assert.equal(await locks.mutex(k).tryAcquire(), null, 'still exclusive with 3 of 5')
      const info = await locks.inspect(k)
      assert.equal(info?.token, h.lease?.token)
      assert.equal(await h.release(), true)
      const h2 = await locks.mutex(k).acquire()
      assert.ok(h2.fencingToken > h.fencingToken, 'fencing tokens keep increasing')
      await h2.release()
      await servers[1]!.kill()
      await assert.rejects(locks.mutex(k).acquire({ waitMs: 300 }), LockUnavailableError, 'no majority: fail, never grant')
    } finally {
      await locks.close()
      for (const s of servers) await s.stop()
    }
  })

  test('quorum (3 servers) - a restarted server does not vote until its uptime passes the TTL', async () => {
    const servers = await startServers(3)
    await untilVoting(servers)
    const locks = new Locks({ servers: servers.map((s) => s.address), quorum: true, maxTtlMs: 1000, defaults: { ttlMs: 1000 }, connectTimeoutMs: 2000, requestTimeoutMs: 1500, onWarning: () => {} })
    try {
      const k = uniqueKey('q3')
      const h = await locks.mutex(k, { ttlMs: 1000 }).acquire()
      assert.equal(await h.release(), true)
      await servers[0]!.restart()
      await servers[1]!.kill()
      await sleep(200)
      // voters: servers[2] only (servers[0] is too young): no majority
      await assert.rejects(locks.mutex(k).acquire({ waitMs: 300 }), LockUnavailableError)
      assert.equal((await Promise.all(servers.map((s) => rawHas(s, k)))).filter(Boolean).length, 0, 'no partial grant left behind')
      // two young servers and no error at all: the reason is given, in one error (not nested)
      await servers[1]!.restart()
      await sleep(200)
      await assert.rejects(locks.mutex(k).acquire({ waitMs: 300 }), (err: unknown) => {
        assert.ok(err instanceof LockUnavailableError, String(err))
        assert.ok(!(err.cause instanceof LockUnavailableError), 'not wrapped twice')
        assert.match(String((err.cause as Error)?.message), /2 of 3 servers restarted less than \d+ s ago and may not vote yet/)
        return true
      })
      await untilVoting(servers)
      const h2 = await locks.mutex(k).acquire({ waitMs: 2000 })
      assert.ok(h2.fencingToken > h.fencingToken)
      await h2.release()
    } finally {
      await locks.close()
      for (const s of servers) await s.stop()
    }
  })

  test('quorum (3 servers) - a member that stops answering does not hold up the majority', async () => {
    const servers = await startServers(3)
    const silent = await TcpProxy.start({ host: '127.0.0.1', port: servers[2]!.port })
    const addresses = [servers[0]!.address, servers[1]!.address, silent.address]
    await untilVoting(servers)
    // the silent member's requests time out after 3 s, longer than the 1 s TTL: waiting for it would spend the lease
    const options = { servers: addresses, quorum: true, maxTtlMs: 1000, defaults: { ttlMs: 1000 }, connectTimeoutMs: 3000, requestTimeoutMs: 3000, onWarning: () => {} }
    const a = new Locks(options)
    const b = new Locks(options)
    a.on('renewal-error', () => {})
    b.on('renewal-error', () => {})
    try {
      await a.inspect('warm-up')
      await b.inspect('warm-up')
      silent.blackHole(true, 'hold')
      const keys = [1, 2, 3].map((i) => uniqueKey(`silent-${i}`))
      for (const k of keys) {
        const h = await a.mutex(k).tryAcquire()
        assert.ok(h, 'granted by the two members that answer')
        assert.equal(h.isHeld, true, 'with validity left')
        assert.equal(await b.mutex(k).tryAcquire(), null, 'exclusive: the other client is refused by the majority')
        // inspect answers from the majority too, before its request to the silent member times
        // out (a timeout drops that member's connection: no drop while it ran)
        const info = await withoutDrop(b, silent.address, () => b.inspect(k))
        assert.equal(info?.token, h.lease?.token, 'inspect shows the holder')
        assert.ok(info && info.fence >= (h.lease?.fence ?? 0n), 'with a fence at least the holder\'s')
        await h.extend()
        assert.equal(await h.release(), true)
        const again = await b.mutex(k).tryAcquire()
        assert.ok(again, 'released on the majority')
        await again.release()
        assert.equal(await withoutDrop(a, silent.address, () => a.inspect(k)), null, 'free on the majority')
      }
      // the held requests reach the member now: grants that come after the release are given back
      silent.blackHole(false)
      await sleep(500)
      for (const k of keys) assert.equal(await rawHas(servers[2]!, k), false, `${k}: nothing left on the slow member`)
    } finally {
      await Promise.all([a.close(), b.close()])
      await silent.close()
      for (const s of servers) await s.stop()
    }
  })

  test('quorum (3 servers) - a release a majority did not hear rejects (no false loss) and is tried again until heard', async () => {
    const { servers, proxies, a, lost, stop } = await proxiedQuorum([1, 2])
    try {
      const k = uniqueKey('quorum-release-retry')
      await a.inspect(k)
      const h = await a.mutex(k).acquire({ ttlMs: 1000 })
      await untilParts(h, 3)
      const before = await Promise.all(servers.slice(1).map(casHits))
      for (const p of proxies) p.blackHole(true) // 'drop': two of three never hear the release
      await assert.rejects(h.release(), 'the release could not be confirmed by a majority')
      assert.deepEqual(lost, [], 'and that is no loss')
      for (const p of proxies) p.blackHole(false)
      // the retry's compare-and-expire reaches both (a lease running out by itself counts no CAS hit)
      await eventually(async () => {
        const after = await Promise.all(servers.slice(1).map(casHits))
        assert.deepEqual(after, before.map((n) => n + 1))
      }, 5_000)
      for (const server of servers) assert.equal(await rawHas(server, k), false)
    } finally {
      await stop()
    }
  })

  test('quorum (3 servers) - a member that missed a release heard by the majority gets it later (its part does not wait for the TTL)', async () => {
    const { servers, proxies, a, lost, stop } = await proxiedQuorum([2])
    const proxy = proxies[0]!
    try {
      const k = uniqueKey('quorum-minority-release')
      await a.inspect(k)
      const h = await a.mutex(k).acquire({ ttlMs: 1000 })
      await untilParts(h, 3)
      assert.equal(await rawHas(servers[2]!, k), true, 'the proxied member granted it too')
      const before = await casHits(servers[2]!)
      proxy.blackHole(true) // 'drop': the proxied member does not hear the release
      const memberDown = nextDown(a, proxy.address, "the member's delete timing out")
      assert.equal(await h.release(), true, 'released: a majority heard it')
      assert.deepEqual(lost, [])
      // its delete is lost: the request times out and the connection drops; then the link returns
      await memberDown
      proxy.blackHole(false)
      // the background retry's compare-and-expire reaches the member (expiry by TTL counts no CAS hit)
      await eventually(async () => {
        assert.equal(await casHits(servers[2]!), before + 1)
        assert.equal(await rawHas(servers[2]!, k), false)
      }, 5_000)

      // a lease of two parts (a restarted member does not vote): one unreachable part is still no loss
      await servers[0]!.restart()
      await eventually(() => a.inspect(k), 5_000) // reconnected to the restarted member
      const two = await a.mutex(k).acquire({ ttlMs: 1000 })
      await untilParts(two, 2)
      // the lock is taken once two members granted it: the young member's answer, and the give-back
      // of its grant, may come after that (in the background)
      await eventually(async () => assert.equal(await rawHas(servers[0]!, k), false, 'the young member gave its grant back'), 2_000)
      const before2 = await casHits(servers[2]!)
      proxy.blackHole(true)
      const memberDown2 = nextDown(a, proxy.address, "the member's delete timing out")
      assert.equal(await two.release(), true, 'released: the part that answered was ours, the other may be')
      assert.deepEqual(lost, [], 'and nothing was reported lost')
      await memberDown2
      proxy.blackHole(false)
      await eventually(async () => assert.equal(await casHits(servers[2]!), before2 + 1), 5_000)
    } finally {
      await stop()
    }
  })

  test('quorum (3 servers) - a member that never answered the grant counts as maybe holding it when a release is judged', async () => {
    const { proxies, a, lost, stop } = await proxiedQuorum([1, 2])
    const [toA, toB] = proxies as [TcpProxy, TcpProxy]
    try {
      const k = uniqueKey('quorum-unknown-grant')
      await a.inspect(k)
      toB.blackHole(true) // B never answers the grant (it may or may not store it)
      const bDown = nextDown(a, toB.address, "B's grant timing out")
      const h = await a.mutex(k).acquire({ ttlMs: 1000 })
      await bDown
      toA.blackHole(true) // and A does not hear the release
      // our token may still be on A and B, a majority: not released, and not lost either
      await assert.rejects(h.release(), (err: unknown) => (err as { code?: string }).code === 'ERR_REQUEST_TIMEOUT')
      assert.deepEqual(lost, [])
    } finally {
      await stop()
    }
  })

  test('quorum (3 servers) - inspect does not call a lock free when a member that may hold it does not answer', async () => {
    const servers = await startServers(3)
    const toSecond = await TcpProxy.start({ host: '127.0.0.1', port: servers[1]!.port })
    const toThird = await TcpProxy.start({ host: '127.0.0.1', port: servers[2]!.port })
    await untilVoting(servers)
    const quick = { maxTtlMs: 1000, connectTimeoutMs: 300, requestTimeoutMs: 300, onWarning: () => {} }
    const holder = new Locks({ servers: [servers[0]!.address, toSecond.address, servers[2]!.address], quorum: true, ...quick })
    const viewer = new Locks({ servers: [servers[0]!.address, servers[1]!.address, toThird.address], quorum: true, ...quick })
    holder.on('renewal-error', () => {})
    try {
      const k = uniqueKey('quorum-inspect-unknown')
      await holder.inspect(k)
      await viewer.inspect(k)
      toSecond.blackHole(true)
      const h = await holder.mutex(k).tryAcquire({ ttlMs: 1000 })
      assert.ok(h, 'granted by the first and third servers')
      assert.equal(await rawHas(servers[1]!, k), false, 'not on the second')
      toThird.blackHole(true)
      // the viewer sees the holder on the first server, nothing on the second, no answer from the
      // third: the third may hold it too (it does), so "free" would be a guess
      await assert.rejects(viewer.inspect(k), LockUnavailableError)
    } finally {
      toSecond.blackHole(false)
      toThird.blackHole(false)
      await Promise.all([holder.close(), viewer.close()])
      await toSecond.close()
      await toThird.close()
      for (const s of servers) await s.stop()
    }
  })

  test('quorum (5 servers) - brief disconnects of several members over a long hold are no loss', async () => {
    const servers = await startServers(5)
    const proxies = await Promise.all(servers.slice(0, 3).map((s) => TcpProxy.start({ host: '127.0.0.1', port: s.port })))
    const addresses = [...proxies.map((p) => p.address), servers[3]!.address, servers[4]!.address]
    await untilVoting(servers)
    const locks = new Locks({ servers: addresses, quorum: true, maxTtlMs: 1000, defaults: { ttlMs: 1000 }, onWarning: () => {} })
    locks.on('renewal-error', () => {})
    try {
      const h = await locks.mutex(uniqueKey('q5-blips')).acquire({ autoRenew: false })
      // one member at a time drops its connections and comes back with the lease; the holder renews in between
      for (const proxy of proxies) {
        proxy.cutAll()
        await sleep(50)
        // back with the lease: its connection is ready again before the renewal
        await eventually(async () => assert.ok(locks.health().every((s) => s.state === 'ready'), 'every member reconnected'))
        await h.extend()
        assert.equal(h.state, 'held', `after a blip of ${proxy.address}: a majority held the lease all along`)
        // (the extension answers once a majority extended; the others join it a moment later)
        await sleep(100)
      }
      assert.equal(await h.release(), true)
    } finally {
      await locks.close()
      await Promise.all(proxies.map((p) => p.close()))
      for (const s of servers) await s.stop()
    }
  })

  test('quorum - fewer than 3 servers is refused', () => {
    assert.throws(() => new Locks({ servers: ['127.0.0.1:1', '127.0.0.1:2'], quorum: true }), /at least 3 independent servers/)
  })
})

/**
 * `fn()`, checking that `server`'s connection did not drop while it ran: a request that times out
 * drops its connection, so an operation that waited for a silent server's answer fails this.
 */
async function withoutDrop<T>(locks: Locks, server: string, fn: () => Promise<T>): Promise<T> {
  const drops: string[] = []
  const onState = (name: string, state: string): void => {
    if (name === server && state === 'down') drops.push(name)
  }
  locks.on('server-state', onState)
  try {
    const result = await fn()
    assert.deepEqual(drops, [], `${server} dropped while the operation waited for it`)
    return result
  } finally {
    locks.off('server-state', onState)
  }
}

/** The server's count of compare-and-set hits (a release is a compare-and-expire store). */
async function casHits(server: MemcachedServer): Promise<number> {
  const c = new MemcachedClient({ servers: parseServerList(server.address) })
  try {
    return Number((await c.connections[0]!.stats()).cas_hits)
  } finally {
    await c.close()
  }
}

async function rawHas(server: MemcachedServer, key: string): Promise<boolean> {
  if (!server.running) return false
  const c = new MemcachedClient({ servers: parseServerList(server.address) })
  try {
    const k = encodeKey('lock:', key)
    return (await c.connectionFor(k).metaGet(k, [])).status !== 'EN'
  } finally {
    await c.close()
  }
}

interface Hold {
  key: string
  start: number
  end: number
  fence: string
  ended: string
  signalled: boolean
}

async function runWorkers(n: number, env: Record<string, string>): Promise<{ holds: Hold[]; errors: Record<string, number> }> {
  const outs = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<string>((resolve, reject) => {
          const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/cluster-worker.ts'], {
            env: { ...process.env, ...env },
            stdio: ['ignore', 'pipe', 'inherit'],
          })
          let out = ''
          child.stdout.on('data', (d: Buffer) => (out += d.toString()))
          const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
          child.on('exit', (code) => {
            clearTimeout(timer)
            if (code === 0) resolve(out)
            else reject(new Error(`cluster worker exited with ${code}`))
          })
        }),
    ),
  )
  const holds: Hold[] = []
  const errors: Record<string, number> = {}
  for (const o of outs) {
    const r = JSON.parse(o) as { holds: Hold[]; errors: Record<string, number> }
    holds.push(...r.holds)
    for (const [code, count] of Object.entries(r.errors)) errors[code] = (errors[code] ?? 0) + count
  }
  return { holds, errors }
}

function checkHistory(holds: Hold[], fencesMonotonic: boolean): string[] {
  const problems: string[] = []
  const byKey = new Map<string, Hold[]>()
  for (const h of holds) byKey.set(h.key, [...(byKey.get(h.key) ?? []), h])
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.start - b.start)
    let maxEnd = -Infinity
    let prev: Hold | null = null
    for (const h of list) {
      if (h.start < maxEnd) problems.push(`${key}: a hold starting at ${h.start} overlaps one valid until ${maxEnd}`)
      if (fencesMonotonic && prev && BigInt(h.fence) <= BigInt(prev.fence)) problems.push(`${key}: fence ${h.fence} after ${prev.fence}`)
      if (h.ended !== 'released' && !h.signalled) problems.push(`${key}: a lease ended (${h.ended}) without a loss signal`)
      maxEnd = Math.max(maxEnd, h.end)
      prev = h
    }
  }
  return problems
}

describe('cluster safety under random kills and restarts', () => {
  for (const mode of ['sharded', 'quorum'] as const) {
    test(`cluster safety - ${mode}: 3 processes, random server kills and restarts, zero overlaps among valid holders`, async () => {
      const seed = Number(process.env.CLUSTER_SEED ?? Date.now() % 100_000)
      let state = seed
      const rand = (): number => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
      console.log(`cluster safety ${mode} seed=${seed} (replay with CLUSTER_SEED=${seed})`)
      const servers = await startServers(mode === 'quorum' ? 5 : 3)
      if (mode === 'quorum') await untilVoting(servers)
      const keys = Array.from({ length: 4 }, (_, i) => uniqueKey(`safe-${mode}-${i}`))
      const work = runWorkers(3, {
        CW_SERVERS: servers.map((s) => s.address).join(','),
        CW_QUORUM: mode === 'quorum' ? '1' : '0',
        CW_KEYS: keys.join(','),
        CW_DURATION_MS: '9000',
        CW_TTL_MS: '1000',
        CW_MAX_TTL_MS: '1000',
      })
      let faults = 0
      try {
        // one fault every ~1.5 s: kill a random server, bring it back 300-800 ms later
        const end = performance.now() + 8000
        await sleep(800)
        while (performance.now() < end) {
          const victim = servers[Math.floor(rand() * servers.length)] as MemcachedServer
          await victim.kill()
          faults++
          await sleep(300 + rand() * 500)
          await victim.restart()
          await sleep(700 + rand() * 500)
        }
        const { holds, errors } = await work
        const problems = checkHistory(holds, true)
        console.log(`cluster safety ${mode}: ${holds.length} holds, ${faults} kills, errors ${JSON.stringify(errors)}, violations ${problems.length}`)
        assert.deepEqual(problems, [])
        assert.ok(holds.length > 20, `work got done between the faults (${holds.length} holds)`)
        assert.ok(holds.some((h) => h.ended !== 'released') || faults > 0)
      } finally {
        await work.catch(() => {})
        for (const s of servers) await s.stop()
      }
    })
  }
})
