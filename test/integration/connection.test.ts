import assert from 'node:assert/strict'
import { AsyncLocalStorage } from 'node:async_hooks'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'

import { Connection, type ConnectionOptions, type ConnectionState, type ServerIdentity } from '../../src/client/connection.js'
import {
  AuthError,
  ClosedError,
  ConnectionClosedError,
  ConnectionError,
  ConnectTimeoutError,
  MemcachedLockError,
  ProtocolError,
  RequestTimeoutError,
  ServerError,
} from '../../src/errors.js'
import type { MetaReply } from '../../src/protocol/decoder.js'
import { encodeKey, type WireKey } from '../../src/protocol/keys.js'
import { FakeServer, blackHole, replyWith, type FakeHandler } from '../helpers/fake-server.js'
import { MemcachedServer, memcachedSupportsTls } from '../helpers/memcached-server.js'
import { TcpProxy } from '../helpers/tcp-proxy.js'

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/**
 * Quick reconnects. The timeouts stay generous here so that a loaded machine cannot fail tests
 * about something else; the tests about timeouts set short ones (200-500 ms) themselves.
 */
const FAST: ConnectionOptions = {
  connectTimeoutMs: 2000,
  requestTimeoutMs: 2000,
  reconnectMinDelayMs: 10,
  reconnectMaxDelayMs: 100,
}

let keyCounter = 0
/** A key no other test (or test run) uses. */
function uniqueKey(name: string): WireKey {
  return encodeKey(`conn-${process.pid}-${Date.now().toString(36)}-${++keyCounter}:`, name)
}

function connect(target: { host: string; port: number }, options: ConnectionOptions = {}): Connection {
  return new Connection({ host: target.host, port: target.port }, { ...FAST, ...options })
}

type ErrorClass = abstract new (...args: never[]) => MemcachedLockError

/** Asserts that `err` is exactly of class `cls` (not a subclass) with `code`. */
function assertError(err: unknown, cls: ErrorClass, code: string, message?: RegExp): asserts err is MemcachedLockError {
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`)
  assert.equal((err as Error).constructor, cls, `expected exactly ${cls.name}, got ${(err as Error).name}`)
  assert.equal((err as MemcachedLockError).code, code)
  if (message) assert.match((err as Error).message, message)
}

/** Asserts that `promise` rejects with exactly class `cls` and `code`; returns the error. */
async function rejectsWith(promise: Promise<unknown>, cls: ErrorClass, code: string, message?: RegExp): Promise<MemcachedLockError> {
  let caught: unknown
  await assert.rejects(promise, (err: unknown) => {
    caught = err
    return true
  })
  assertError(caught, cls, code, message)
  return caught
}

/** The reason of a rejected outcome (fails if it was fulfilled). */
function reasonOf(outcome: PromiseSettledResult<unknown> | undefined): unknown {
  assert.equal(outcome?.status, 'rejected', `expected a rejection, got ${JSON.stringify(outcome)}`)
  return (outcome as PromiseRejectedResult).reason
}

/** Settles every promise and returns the outcomes, without leaving any rejection unhandled. */
function settleAll(promises: Promise<unknown>[]): Promise<PromiseSettledResult<unknown>[]> {
  return Promise.allSettled(promises)
}

function waitForState(conn: Connection, state: ConnectionState, timeoutMs = 3000): Promise<void> {
  if (conn.state === state) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      conn.off('state', onState)
      reject(new Error(`connection did not reach state ${state} within ${timeoutMs} ms (now ${conn.state})`))
    }, timeoutMs)
    const onState = (s: ConnectionState): void => {
      if (s !== state) return
      clearTimeout(timer)
      conn.off('state', onState)
      resolve()
    }
    conn.on('state', onState)
  })
}

function waitForEvent<T extends unknown[]>(emitter: { once(event: string, fn: (...args: T) => void): unknown }, event: string, timeoutMs = 3000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} event within ${timeoutMs} ms`)), timeoutMs)
    emitter.once(event, (...args: T) => {
      clearTimeout(timer)
      resolve(args)
    })
  })
}

/** Runs `body` with a connection to a fake server that answers with `handler`; closes both afterwards. */
async function withFake(
  handler: FakeHandler,
  ...args: [body: (conn: Connection, fake: FakeServer) => Promise<void>] | [options: ConnectionOptions, body: (conn: Connection, fake: FakeServer) => Promise<void>]
): Promise<void> {
  const [options, body] = args.length === 1 ? [{}, args[0]] : args
  const fake = await FakeServer.start(handler)
  const conn = connect(fake, options)
  try {
    await body(conn, fake)
  } finally {
    await conn.close()
    await fake.close()
  }
}

/** Resolves when the peer closed `socket` (server side of a FakeServer connection). */
function waitForClose(socket: net.Socket, timeoutMs = 2000): Promise<void> {
  if (socket.destroyed || socket.readableEnded) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket not closed within ${timeoutMs} ms`)), timeoutMs)
    const done = (): void => {
      clearTimeout(timer)
      resolve()
    }
    socket.once('close', done)
    socket.once('end', done)
  })
}

async function freeClosedPort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function cas(reply: MetaReply): number {
  assert.match(reply.flags.c ?? '', /^\d+$/, `reply has no CAS: ${JSON.stringify(reply)}`)
  return Number(reply.flags.c)
}

// ---- a scripted fake memcached ----

const FAKE_STATS = 'STAT pid 4242\r\nSTAT uptime 10\r\nSTAT time 1795670530\r\nSTAT version 1.6.18\r\nEND\r\n'
const FAKE_SETTINGS = 'STAT evictions on\r\nSTAT temporary_ttl 61\r\nEND\r\n'

/** The `O` opaque of a request line. */
function opaqueOf(line: string): string {
  const m = / O(\d+)(?: |$)/.exec(line)
  assert.ok(m, `request without opaque: ${line}`)
  return m[1] as string
}

/** A fake memcached that answers the handshake; other lines go to `onLine` (null: no answer). */
function fakeMemcached(onLine: (line: string, socket: net.Socket) => string | Buffer | null): FakeHandler {
  return (socket, server) => {
    replyWith((line) => {
      if (line === 'stats') return FAKE_STATS
      if (line === 'stats settings') return FAKE_SETTINGS
      return onLine(line, socket)
    })(socket, server)
  }
}

/** The usual fake answer: `EN` with the request's opaque, `MN` to `mn`. */
function answerMiss(line: string): string | null {
  if (line === 'mn') return 'MN\r\n'
  if (line.startsWith('mg ')) return `EN O${opaqueOf(line)}\r\n`
  return null
}

// ---------------------------------------------------------------------------
// real server: round trips
// ---------------------------------------------------------------------------

describe('Connection - real memcached round trips', () => {
  let server: MemcachedServer
  let conn: Connection

  before(async () => {
    server = await MemcachedServer.start()
    conn = connect(server)
    await conn.connect()
  })

  after(async () => {
    await conn?.close()
    await server?.stop()
  })

  test('connection - ms ME c adds with HD c<n>, a second add gets NS', async () => {
    const key = uniqueKey('add')
    const first = await conn.metaSet(key, 'owner-A1', ['T30', 'ME', 'c'])
    assert.equal(first.status, 'HD')
    assert.ok(cas(first) > 0)
    const second = await conn.metaSet(key, 'owner-B1', ['T30', 'ME', 'c'])
    assert.equal(second.status, 'NS')
    const got = await conn.metaGet(key, ['v', 'c'])
    assert.equal(got.status, 'VA')
    assert.equal(got.value?.toString(), 'owner-A1')
    assert.equal(cas(got), cas(first))
  })

  test('connection - ms C<cas> T c extends with a new CAS, a stale CAS gets EX', async () => {
    const key = uniqueKey('extend')
    const added = await conn.metaSet(key, 'ab', ['T30', 'ME', 'c'])
    const extended = await conn.metaSet(key, 'ab', ['T100', 'C' + cas(added), 'c'])
    assert.equal(extended.status, 'HD')
    assert.ok(cas(extended) > cas(added), `new CAS ${cas(extended)} after ${cas(added)}`)
    const got = await conn.metaGet(key, ['t', 'c'])
    assert.equal(got.status, 'HD')
    assert.ok(Number(got.flags.t) > 30 && Number(got.flags.t) <= 100, `ttl ${got.flags.t}`)
    const stale = await conn.metaSet(key, 'ab', ['T100', 'C' + cas(added), 'c'])
    assert.equal(stale.status, 'EX')
    const missing = await conn.metaSet(uniqueKey('extend-missing'), 'ab', ['T100', 'C1', 'c'])
    assert.equal(missing.status, 'NF')
  })

  test('connection - md with a wrong CAS gets EX, the right one HD, then NF', async () => {
    const key = uniqueKey('delete')
    const added = await conn.metaSet(key, 'ab', ['T30', 'ME', 'c'])
    assert.equal((await conn.metaDelete(key, ['C' + (cas(added) + 1000)])).status, 'EX')
    assert.equal((await conn.metaDelete(key, ['C0'])).status, 'EX', 'C0 is not a wildcard')
    assert.equal((await conn.metaGet(key, ['v'])).status, 'VA', 'the item is untouched')
    assert.equal((await conn.metaDelete(key, ['C' + cas(added)])).status, 'HD')
    assert.equal((await conn.metaDelete(key, ['C' + cas(added)])).status, 'NF')
  })

  test('connection - ms T-1 C<cas> expires at once: HD, then mg EN', async () => {
    const key = uniqueKey('expire')
    const added = await conn.metaSet(key, 'ab', ['T30', 'ME', 'c'])
    assert.equal((await conn.metaSet(key, 'ab', ['T-1', 'C' + (cas(added) + 99)])).status, 'EX')
    assert.equal((await conn.metaSet(key, 'ab', ['T-1', 'C' + cas(added)])).status, 'HD')
    assert.equal((await conn.metaGet(key, ['v', 'c', 't'])).status, 'EN')
  })

  test('connection - mg v c t k returns the value, CAS, TTL and key', async () => {
    const key = uniqueKey('get')
    const added = await conn.metaSet(key, 'owner-A1', ['T30', 'ME', 'c'])
    const got = await conn.metaGet(key, ['v', 'c', 't', 'k', 's', 'f'])
    assert.equal(got.status, 'VA')
    assert.equal(got.value?.toString(), 'owner-A1')
    assert.equal(cas(got), cas(added))
    assert.ok(Number(got.flags.t) >= 29 && Number(got.flags.t) <= 30, `ttl ${got.flags.t}`)
    assert.equal(got.flags.k, key.wire)
    assert.equal(got.flags.s, '8')
    assert.equal(got.flags.f, '0')
    assert.equal(got.flags.b, undefined)
    // without v a hit is HD
    assert.equal((await conn.metaGet(key, ['c'])).status, 'HD')
    // T0 means never expires: t-1
    const forever = uniqueKey('forever')
    await conn.metaSet(forever, 'x', ['T0'])
    assert.equal((await conn.metaGet(forever, ['t'])).flags.t, '-1')
  })

  test('connection - mg of a missing key gets EN', async () => {
    const got = await conn.metaGet(uniqueKey('missing'), ['v', 'c', 't'])
    assert.equal(got.status, 'EN')
    assert.equal(got.value, undefined)
  })

  test('connection - a value with CRLF and binary-looking text round trips', async () => {
    const key = uniqueKey('crlf')
    const value = 'line1\r\nEND\r\nVA 3\r\nmn\r\n'
    assert.equal((await conn.metaSet(key, value, ['T30'])).status, 'HD')
    const got = await conn.metaGet(key, ['v'])
    assert.equal(got.value?.toString(), value)
    assert.equal((await conn.metaNoop()).status, 'MN', 'the stream is still in sync')
  })

  test('connection - ma increments and checks the CAS', async () => {
    const key = uniqueKey('counter')
    const added = await conn.metaSet(key, '40', ['T30', 'c'])
    const inc = await conn.metaArithmetic(key, ['D2', 'v', 'c', 't'])
    assert.equal(inc.status, 'VA')
    assert.equal(inc.value?.toString(), '42')
    assert.ok(cas(inc) > cas(added))
    assert.equal((await conn.metaArithmetic(key, ['C' + cas(added), 'D1'])).status, 'EX')
    const touched = await conn.metaArithmetic(key, ['C' + cas(inc), 'D0', 'T77', 'c', 't', 'v'])
    assert.equal(touched.status, 'VA')
    assert.equal(touched.value?.toString(), '42')
    assert.equal(touched.flags.t, '77')
    assert.equal((await conn.metaArithmetic(uniqueKey('counter-missing'), ['D1'])).status, 'NF')
  })

  test('connection - mn answers MN', async () => {
    const reply = await conn.metaNoop()
    assert.equal(reply.status, 'MN')
    assert.deepEqual(reply.flags, {})
  })

  test('connection - version answers the server version', async () => {
    assert.match(await conn.version(), /^1\.6\.\d+/)
  })

  test('connection - stats and stats settings', async () => {
    const stats = await conn.stats()
    assert.equal(Number(stats.pid), server.pid)
    assert.match(stats.version ?? '', /^1\.6\./)
    assert.match(stats.curr_connections ?? '', /^\d+$/)
    const settings = await conn.stats('settings')
    assert.equal(settings.evictions, 'on')
    assert.equal(settings.tcpport, String(server.port))
    assert.equal(settings.udpport, '0')
  })

  test('connection - base64 keys round trip and come back with the b flag', async () => {
    for (const name of ['a key with spaces', 'line\r\nbreak', 'nul\0byte', 'clé-🔒']) {
      const key = uniqueKey(name)
      assert.equal(key.base64, true)
      const added = await conn.metaSet(key, 'v-' + name.length, ['T30', 'ME', 'c', 'k'])
      assert.equal(added.status, 'HD')
      assert.equal(added.flags.k, key.wire)
      assert.equal(added.flags.b, '')
      const got = await conn.metaGet(key, ['v', 'k'])
      assert.equal(got.status, 'VA')
      assert.equal(got.value?.toString(), 'v-' + name.length)
      assert.equal(got.flags.k, key.wire)
      assert.equal(got.flags.b, '')
      assert.equal((await conn.metaDelete(key, ['C' + cas(added)])).status, 'HD')
    }
  })

  test('connection - a 186-byte binary key and a hashed key round trip', async () => {
    const bytes = randomBytes(186)
    bytes[0] = 0xff // never valid UTF-8, like the hashed form
    const binary: WireKey = { wire: bytes.toString('base64'), base64: true }
    assert.equal(binary.wire.length, 248)
    const nonAscii = encodeKey('', `b64-${process.pid}-${Date.now()}:`.padEnd(60, '-') + 'é'.repeat(63))
    const hashed = uniqueKey('long name with spaces '.repeat(20))
    assert.equal(Buffer.from(hashed.wire, 'base64')[0], 0xff)
    for (const key of [binary, nonAscii, hashed]) {
      assert.equal(key.base64, true)
      assert.ok(key.wire.length <= 250)
      const added = await conn.metaSet(key, 'bin', ['T30', 'ME', 'c'])
      assert.equal(added.status, 'HD', `ms of a ${key.wire.length}-character key`)
      const got = await conn.metaGet(key, ['v', 'c', 'k'])
      assert.equal(got.value?.toString(), 'bin')
      assert.equal(got.flags.k, key.wire)
      assert.equal((await conn.metaDelete(key, ['C' + cas(got)])).status, 'HD')
    }
  })

  test('connection - identity: pid, boot epoch, version and settings', async () => {
    const id = conn.identity
    assert.ok(id)
    assert.equal(id.pid, server.pid)
    assert.equal(id.bootEpoch, id.time - id.uptime)
    assert.match(id.version, /^1\.6\./)
    assert.equal(id.settings.evictions, 'on')
    const stats = await conn.stats()
    // the epoch is stable while the server runs (it may move by one second on a tick boundary)
    assert.ok(Math.abs(Number(stats.time) - Number(stats.uptime) - id.bootEpoch) <= 1)
    assert.equal(conn.state, 'ready')
    assert.equal(conn.generation, 1)
    assert.equal(conn.name, `127.0.0.1:${server.port}`)
  })

  test('connection - 64 concurrent requests all resolve, in order, each with its own opaque', async () => {
    const keys = Array.from({ length: 64 }, (_, i) => uniqueKey(`batch-${i}`))
    const sets = await Promise.all(keys.map((k, i) => conn.metaSet(k, `value-${i}`, ['T30', 'c'])))
    assert.ok(sets.every((r) => r.status === 'HD'))
    const order: number[] = []
    const gets = await Promise.all(
      keys.map((k, i) =>
        conn.metaGet(k, ['v', 'c']).then((r) => {
          order.push(i)
          return r
        }),
      ),
    )
    assert.deepEqual(order, keys.map((_, i) => i), 'replies resolve in request order')
    gets.forEach((r, i) => {
      assert.equal(r.status, 'VA')
      assert.equal(r.value?.toString(), `value-${i}`)
      assert.equal(cas(r), cas(sets[i] as MetaReply))
    })
    const opaques = gets.map((r) => Number(r.flags.O))
    opaques.forEach((o, i) => {
      const previous = opaques[i - 1] as number
      // the tokens cycle through 1..4095
      if (i > 0) assert.equal(o, previous === 4095 ? 1 : previous + 1, 'consecutive opaques')
    })
  })

  test('connection - requests keep the AsyncLocalStorage context of their caller, with promises made ahead', async () => {
    const key = uniqueKey('als')
    await conn.metaSet(key, 'a', ['T30'])
    // a burst, then a turn of the event loop: the promises of the next requests are made ahead,
    // outside any of the contexts below
    await Promise.all(Array.from({ length: 64 }, () => conn.metaGet(key, ['v'])))
    await new Promise((resolve) => setImmediate(resolve))
    const als = new AsyncLocalStorage<string>()
    const seen = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        als.run(`caller-${i}`, async () => {
          const r = await conn.metaGet(key, ['v'])
          const afterAwait = als.getStore()
          const afterThen = await conn.metaGet(key, ['v']).then(() => als.getStore())
          return `${r.status} ${afterAwait} ${afterThen}`
        }),
      ),
    )
    seen.forEach((s, i) => assert.equal(s, `VA caller-${i} caller-${i}`))
  })

  test('connection - opaque tokens wrap around after 4095 and every reply still matches its request', async () => {
    const key = uniqueKey('wrap')
    await conn.metaSet(key, 'w', ['T30'])
    const gets = await Promise.all(Array.from({ length: 5000 }, () => conn.metaGet(key, ['v'])))
    const opaques = gets.map((r) => Number(r.opaque))
    assert.ok(opaques.every((o) => o >= 1 && o <= 4095))
    assert.ok(opaques.includes(4095) && opaques.lastIndexOf(1) > opaques.indexOf(4095), 'wrapped')
    assert.ok(gets.every((r) => r.status === 'VA' && r.value?.toString() === 'w'))
    assert.equal(conn.state, 'ready')
  })

  test('connection - values of every size come out exact although every read lands in the same buffer', async () => {
    // sizes around the read buffer (64 KiB) and the decoder's shared copy (16 KiB), so replies
    // and values are cut across reads at many points; each value has its own byte pattern
    const sizes = [0, 1, 31, 1023, 1025, 16_383, 16_385, 65_535, 65_536, 65_537, 200_000, 7, 70_000, 2]
    const keys = sizes.map((n, i) => uniqueKey(`sizes-${i}-${n}`))
    const values = sizes.map((n, i) => Array.from({ length: n }, (_, j) => String.fromCharCode(0x21 + ((i * 7 + j) % 90))).join(''))
    const sets = await Promise.all(keys.map((k, i) => conn.metaSet(k, values[i] as string, ['T30'])))
    assert.ok(sets.every((r) => r.status === 'HD'))
    for (let round = 0; round < 3; round++) {
      const gets = await Promise.all(keys.flatMap((k) => [conn.metaGet(k, ['v', 'c']), conn.metaGet(k, ['v'])]))
      gets.forEach((r, n) => {
        const i = n >> 1
        assert.equal(r.status, 'VA', `key ${i}`)
        assert.equal(r.value?.length, sizes[i], `length of value ${i}`)
        assert.ok(r.value?.equals(Buffer.from(values[i] as string, 'latin1')), `bytes of value ${i} (${sizes[i]} bytes)`)
      })
    }
  })

  test('connection - mixed commands in one batch keep their order', async () => {
    const key = uniqueKey('mixed')
    const [add, noop, get, version, del, miss] = await Promise.all([
      conn.metaSet(key, 'x', ['T30', 'ME', 'c']),
      conn.metaNoop(),
      conn.metaGet(key, ['v']),
      conn.version(),
      conn.metaDelete(key, []),
      conn.metaGet(key, ['v']),
    ])
    assert.equal(add.status, 'HD')
    assert.equal(noop.status, 'MN')
    assert.equal(get.value?.toString(), 'x')
    assert.match(version, /^1\.6\./)
    assert.equal(del.status, 'HD')
    assert.equal(miss.status, 'EN')
  })

  test('connection - a request too long for the server is a ServerError, and the connection recovers', async () => {
    const tooLong: WireKey = { wire: 'k'.repeat(251), base64: false }
    const before = conn.generation
    const outcomes = await settleAll([conn.metaGet(tooLong, ['v']), conn.metaNoop()])
    const err = reasonOf(outcomes[0])
    assertError(err, ServerError, 'ERR_SERVER', /CLIENT_ERROR/)
    assert.equal((err as ServerError).kind, 'CLIENT_ERROR')
    // CLIENT_ERROR desyncs the stream: the connection drops what followed and reconnects
    assertError(reasonOf(outcomes[1]), ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
    await waitForState(conn, 'ready')
    assert.equal(conn.generation, before + 1)
    assert.equal((await conn.metaNoop()).status, 'MN')
  })
})

// ---------------------------------------------------------------------------
// real server: the requests of one turn share socket writes, 32 at most each
// ---------------------------------------------------------------------------

describe('Connection - a turn\'s requests share socket writes', () => {
  /** Requests per socket write while `fn` runs (every socket of this process is watched). */
  async function writesDuring(fn: () => Promise<unknown>): Promise<number[]> {
    const counts: number[] = []
    const original = net.Socket.prototype.write
    net.Socket.prototype.write = function (this: net.Socket, ...args: Parameters<net.Socket['write']>) {
      const data = args[0]
      if (typeof data === 'string') counts.push(data.split('\r\n').length - 1)
      return original.apply(this, args)
    } as typeof original
    try {
      await fn()
    } finally {
      net.Socket.prototype.write = original
    }
    return counts
  }

  for (const [label, args] of [
    ['a default server (-R 20)', []],
    ['a server started with -R 5 (it answers 5 requests per read, then yields)', ['-R', '5']],
  ] as const) {
    test(`connection - 64 concurrent requests to ${label} go out in two writes of 32 and are all answered in order`, async () => {
      const server = await MemcachedServer.start({ args: [...args] })
      const conn = connect(server)
      try {
        await conn.connect()
        const keys = Array.from({ length: 64 }, (_, i) => uniqueKey(`turn-${i}`))
        await Promise.all(keys.map((k, i) => conn.metaSet(k, `v${i}`, ['T30'])))
        const replies: MetaReply[] = []
        const counts = await writesDuring(async () => replies.push(...(await Promise.all(keys.map((k) => conn.metaGet(k, ['v']))))))
        // the first 32 at once, while the turn makes the rest; those at the end of the turn
        assert.deepEqual(counts, [32, 32], `requests per write: ${counts.join(', ')}`)
        assert.deepEqual(
          replies.map((r) => r.value?.toString()),
          keys.map((_, i) => `v${i}`),
        )
      } finally {
        await conn.close()
        await server.stop()
      }
    })
  }

  test('connection - a lone request is one write; requests made in one turn share one write up to 32', async () => {
    const server = await MemcachedServer.start()
    const conn = connect(server)
    try {
      await conn.connect()
      const key = uniqueKey('turn')
      await conn.metaSet(key, 'v', ['T30'])
      assert.deepEqual(await writesDuring(() => conn.metaGet(key, ['v'])), [1])
      const replies: MetaReply[] = []
      const counts = await writesDuring(async () => {
        const first = conn.metaGet(key, ['v'])
        await Promise.resolve() // a promise continuation of the same turn
        replies.push(...(await Promise.all([first, conn.metaGet(key, ['v']), conn.metaNoop()])))
      })
      assert.deepEqual(counts, [3], `requests per write: ${counts.join(', ')}`)
      assert.deepEqual(replies.map((r) => r.status), ['VA', 'VA', 'MN'])
      // a longer burst: slices of 32 as it is made, the rest at the end of the turn, in order
      const answers: MetaReply[] = []
      const sliced = await writesDuring(async () => {
        const burst: Promise<MetaReply>[] = []
        for (let i = 0; i < 70; i++) {
          burst.push(conn.metaGet(key, ['v']))
          if (i % 10 === 9) await Promise.resolve()
        }
        burst.push(conn.metaNoop())
        answers.push(...(await Promise.all(burst)))
      })
      assert.deepEqual(sliced, [32, 32, 7], `requests per write: ${sliced.join(', ')}`)
      assert.deepEqual(answers.map((r) => r.status), [...Array<string>(70).fill('VA'), 'MN'])
    } finally {
      await conn.close()
      await server.stop()
    }
  })
})

// ---------------------------------------------------------------------------
// real server: restarts and crashes
// ---------------------------------------------------------------------------

describe('Connection - server restarts and crashes', () => {
  let server: MemcachedServer

  before(async () => {
    server = await MemcachedServer.start()
  })

  after(async () => {
    await server?.stop()
  })

  test('connection - restart event and a new generation after server.restart()', async () => {
    const conn = connect(server)
    try {
      await conn.connect()
      const first = conn.identity as ServerIdentity
      const gen = conn.generation
      const restarted = waitForEvent<[ServerIdentity, ServerIdentity]>(conn, 'restart')
      const ready = waitForEvent<[ServerIdentity, { restarted: boolean }]>(conn, 'ready')
      await server.restart()
      const [prev, next] = await restarted
      const [readyId, info] = await ready
      assert.equal(prev, first)
      assert.equal(next.pid, server.pid)
      assert.notEqual(next.pid, first.pid)
      assert.equal(readyId, next)
      assert.deepEqual(info, { restarted: true })
      assert.equal(conn.generation, gen + 1)
      assert.equal(conn.identity, next)
      assert.equal((await conn.metaNoop()).status, 'MN')
    } finally {
      await conn.close()
    }
  })

  test('connection - killing the server mid-pipeline fails every in-flight request promptly, then it reconnects', async () => {
    const conn = connect(server)
    try {
      await conn.connect()
      const gen = conn.generation
      const key = uniqueKey('kill')
      await conn.metaSet(key, 'x'.repeat(100), ['T30'])
      // stopped first, so that all 200 requests are surely in flight when it dies
      await server.pause()
      const inflight = Array.from({ length: 200 }, () => conn.metaGet(key, ['v', 'c', 't']))
      const settled = settleAll(inflight)
      const down = waitForEvent<[Error]>(conn, 'down')
      await sleep(20)
      const killedAt = performance.now()
      await server.kill()
      const outcomes = await settled
      const elapsed = performance.now() - killedAt
      assert.ok(elapsed < 1000, `in-flight requests took ${elapsed.toFixed(0)} ms to settle after the kill`)
      for (const o of outcomes) {
        const err = reasonOf(o)
        assertError(err, ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
        assert.equal((err as ConnectionClosedError).server, conn.name)
      }
      const [downErr] = await down
      assertError(downErr, ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
      assert.notEqual(conn.state, 'ready')

      // while the server is dead, requests fail at once or within the connect timeout, typed
      const t0 = performance.now()
      const whileDown = await settleAll([conn.metaNoop(), conn.version()])
      assert.ok(performance.now() - t0 < 700)
      for (const o of whileDown) {
        assertError(reasonOf(o), ConnectionError, 'ERR_CONNECTION')
      }

      const ready = waitForEvent<[ServerIdentity, { restarted: boolean }]>(conn, 'ready', 5000)
      await server.restart()
      const [id, info] = await ready
      assert.equal(id.pid, server.pid)
      assert.equal(info.restarted, true)
      assert.ok(conn.generation > gen)
      assert.equal((await conn.metaGet(key, ['v'])).status, 'EN', 'the restarted server forgot the key')
      assert.equal((await conn.metaSet(key, 'again', ['T30', 'ME'])).status, 'HD')
    } finally {
      await conn.close()
    }
  })

  test('connection - killing the server under a running pipeline gives only replies or typed errors', async () => {
    const conn = connect(server)
    try {
      await conn.connect()
      const key = uniqueKey('kill-live')
      await conn.metaSet(key, 'y', ['T30'])
      const inflight = Array.from({ length: 2000 }, () => conn.metaGet(key, ['v']))
      const settled = settleAll(inflight)
      const killed = server.kill()
      const outcomes = await settled
      await killed
      let failed = 0
      outcomes.forEach((o, i) => {
        if (o.status === 'fulfilled') {
          assert.equal((o.value as MetaReply).value?.toString(), 'y')
          assert.equal(failed, 0, `request ${i} succeeded after an earlier one failed`)
        } else {
          failed++
          assertError(o.reason, ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
        }
      })
      await server.restart()
      await waitForState(conn, 'ready')
      assert.equal((await conn.metaNoop()).status, 'MN')
    } finally {
      await conn.close()
    }
  })
})

// ---------------------------------------------------------------------------
// real server: auth and TLS
// ---------------------------------------------------------------------------

describe('Connection - auth (-Y)', () => {
  const auth = { username: 'lockuser', password: 's3cret' }
  let server: MemcachedServer

  before(async () => {
    server = await MemcachedServer.start({ auth })
  })

  after(async () => {
    await server?.stop()
  })

  test('connection - correct credentials work', async () => {
    const conn = connect(server, { auth })
    try {
      await conn.connect()
      const key = uniqueKey('auth')
      const added = await conn.metaSet(key, 'ab', ['T30', 'ME', 'c'])
      assert.equal(added.status, 'HD')
      assert.equal((await conn.metaDelete(key, ['C' + cas(added)])).status, 'HD')
      assert.equal(conn.identity?.pid, server.pid)
    } finally {
      await conn.close()
    }
  })

  test('connection - a wrong password is an AuthError', async () => {
    const conn = connect(server, { auth: { username: 'lockuser', password: 'wrong' } })
    try {
      await rejectsWith(conn.connect(), AuthError, 'ERR_AUTH', /refused the credentials/)
      assert.equal(conn.state, 'down')
      assertError(conn.lastError, AuthError, 'ERR_AUTH')
    } finally {
      await conn.close()
    }
  })

  test('connection - an unknown user is an AuthError', async () => {
    const conn = connect(server, { auth: { username: 'nobody', password: 's3cret' } })
    try {
      await rejectsWith(conn.connect(), AuthError, 'ERR_AUTH')
    } finally {
      await conn.close()
    }
  })

  test('connection - no credentials is an AuthError that says to set auth', async () => {
    const conn = connect(server)
    try {
      await rejectsWith(conn.connect(), AuthError, 'ERR_AUTH', /requires authentication/)
      // a request made on demand fails with the same error
      const again = connect(server)
      try {
        await rejectsWith(again.metaNoop(), AuthError, 'ERR_AUTH')
      } finally {
        await again.close()
      }
    } finally {
      await conn.close()
    }
  })
})

describe('Connection - TLS (-Z)', async () => {
  const supported = await memcachedSupportsTls()
  let server: MemcachedServer | undefined

  before(async () => {
    if (supported) server = await MemcachedServer.start({ tls: true })
  })

  after(async () => {
    await server?.stop()
  })

  test('connection - TLS with the server CA works', { skip: supported ? false : 'memcached built without TLS' }, async () => {
    const s = server as MemcachedServer
    const conn = connect(s, { tls: { ca: s.tlsCa } })
    try {
      await conn.connect()
      const key = uniqueKey('tls')
      const added = await conn.metaSet(key, 'secure', ['T30', 'ME', 'c'])
      assert.equal(added.status, 'HD')
      assert.equal((await conn.metaGet(key, ['v'])).value?.toString(), 'secure')
      assert.match(await conn.version(), /^1\.6\./)
      assert.equal(conn.identity?.pid, s.pid)
    } finally {
      await conn.close()
    }
  })

  test('connection - TLS without the CA fails to connect with a ConnectionError', { skip: supported ? false : 'memcached built without TLS' }, async () => {
    const conn = connect(server as MemcachedServer, { tls: true })
    try {
      const err = await rejectsWith(conn.connect(), ConnectionError, 'ERR_CONNECTION', /cannot connect/)
      assert.ok(err.cause instanceof Error)
    } finally {
      await conn.close()
    }
  })

  test('connection - plain TCP to a TLS server is a ConnectionError', { skip: supported ? false : 'memcached built without TLS' }, async () => {
    const conn = connect(server as MemcachedServer, { connectTimeoutMs: 300 })
    try {
      // the server resets the connection when the handshake is not TLS
      await rejectsWith(conn.connect(), ConnectionError, 'ERR_CONNECTION', /handshake/)
    } finally {
      await conn.close()
    }
  })
})

// ---------------------------------------------------------------------------
// connect failures and timeouts
// ---------------------------------------------------------------------------

describe('Connection - connect failures', () => {
  test('connection - a closed port is a ConnectionError, then down and fail-fast', async () => {
    const port = await freeClosedPort()
    const conn = connect({ host: '127.0.0.1', port }, { reconnectMinDelayMs: 200, reconnectMaxDelayMs: 400 })
    try {
      const states: ConnectionState[] = []
      conn.on('state', (s: ConnectionState) => states.push(s))
      const err = await rejectsWith(conn.connect(), ConnectionError, 'ERR_CONNECTION', /cannot connect to memcached at 127\.0\.0\.1:\d+/)
      assert.equal((err as ConnectionError).server, `127.0.0.1:${port}`)
      assert.match(String((err.cause as NodeJS.ErrnoException).code), /ECONNREFUSED/)
      assert.equal(conn.state, 'down')
      assert.deepEqual(states.slice(0, 2), ['connecting', 'down'])
      assert.equal(conn.lastError, err)
      const t0 = performance.now()
      const fast = await rejectsWith(conn.metaGet(uniqueKey('down'), ['v']), ConnectionError, 'ERR_CONNECTION', /is down/)
      assert.ok(performance.now() - t0 < 100, 'fails fast while down')
      assert.equal(fast.cause, err)
      await rejectsWith(conn.version(), ConnectionError, 'ERR_CONNECTION')
    } finally {
      await conn.close()
    }
  })

  test('connection - a request on an idle connection to a closed port rejects with ConnectionError', async () => {
    const port = await freeClosedPort()
    const conn = connect({ host: '127.0.0.1', port })
    try {
      await rejectsWith(conn.metaNoop(), ConnectionError, 'ERR_CONNECTION')
    } finally {
      await conn.close()
    }
  })

  test('connection - it keeps retrying and connects by itself once the server appears', async () => {
    const port = await freeClosedPort()
    const conn = connect({ host: '127.0.0.1', port }, { reconnectMinDelayMs: 10, reconnectMaxDelayMs: 50 })
    const sockets: net.Socket[] = []
    const srv = net.createServer((socket) => {
      sockets.push(socket)
      socket.on('error', () => {})
      fakeMemcached(answerMiss)(socket, undefined as unknown as FakeServer)
    })
    try {
      await rejectsWith(conn.connect(), ConnectionError, 'ERR_CONNECTION')
      const states: ConnectionState[] = []
      conn.on('state', (s: ConnectionState) => states.push(s))
      await sleep(150)
      assert.ok(states.filter((s) => s === 'connecting').length >= 2, `states ${states.join(',')}`)
      const ready = waitForEvent<[ServerIdentity, { restarted: boolean }]>(conn, 'ready')
      await new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', resolve))
      const [id, info] = await ready
      assert.equal(id.pid, 4242)
      assert.deepEqual(info, { restarted: false })
      assert.equal(conn.generation, 1)
      assert.equal((await conn.metaNoop()).status, 'MN')
    } finally {
      await conn.close()
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => (srv.listening ? srv.close(() => resolve()) : resolve()))
    }
  })

  test('connection - connect timeout against a server that accepts and never answers', async () => {
    await withFake(blackHole(), { connectTimeoutMs: 300, requestTimeoutMs: 2000 }, async (conn, fake) => {
      const t0 = performance.now()
      const err = await rejectsWith(conn.connect(), ConnectTimeoutError, 'ERR_CONNECT_TIMEOUT', /within 300 ms/)
      const elapsed = performance.now() - t0
      assert.ok(elapsed >= 290 && elapsed < 1300, `timed out after ${elapsed.toFixed(0)} ms`)
      assert.ok(err instanceof ConnectionError, 'a ConnectTimeoutError is a ConnectionError')
      assert.equal(conn.state, 'down')
      assert.match(fake.receivedText, /^stats\r\nstats settings\r\n/)
      await waitForClose(fake.connections[0] as net.Socket)
    })
  })

  test('connection - connect timeout governs the handshake even when requestTimeoutMs is shorter', async () => {
    await withFake(blackHole(), { connectTimeoutMs: 400, requestTimeoutMs: 100 }, async (conn) => {
      const t0 = performance.now()
      await rejectsWith(conn.connect(), ConnectTimeoutError, 'ERR_CONNECT_TIMEOUT')
      const elapsed = performance.now() - t0
      assert.ok(elapsed >= 390 && elapsed < 1400, `timed out after ${elapsed.toFixed(0)} ms`)
    })
  })

  test('connection - requests queued while connecting fail with the connect error', async () => {
    await withFake(blackHole(), { connectTimeoutMs: 300 }, async (conn) => {
      const queued = [conn.metaNoop(), conn.metaGet(uniqueKey('queued'), ['v'])]
      for (const p of queued) await rejectsWith(p, ConnectTimeoutError, 'ERR_CONNECT_TIMEOUT')
    })
  })
})

describe('Connection - request timeout (TcpProxy black hole)', () => {
  let server: MemcachedServer
  let proxy: TcpProxy

  before(async () => {
    server = await MemcachedServer.start()
    proxy = await TcpProxy.start({ host: server.host, port: server.port })
  })

  after(async () => {
    await proxy?.close()
    await server?.stop()
  })

  test('connection - the head times out with RequestTimeoutError, the rest fail with ConnectionClosedError', async () => {
    const conn = connect(proxy, { requestTimeoutMs: 300 })
    try {
      await conn.connect()
      assert.equal((await conn.metaNoop()).status, 'MN')
      proxy.blackHole(true)
      const t0 = performance.now()
      const key = uniqueKey('timeout')
      const requests = [conn.metaGet(key, ['v']), conn.metaSet(key, 'x', ['T30']), conn.metaNoop(), conn.version()]
      const settledAt: number[] = []
      requests.forEach((p, i) => p.catch(() => (settledAt[i] = performance.now() - t0)))
      const outcomes = await settleAll(requests)
      const [headAt, ...restAt] = settledAt as [number, ...number[]]
      assert.ok(headAt >= 290 && headAt < 1000, `the head failed after ${headAt.toFixed(0)} ms`)
      // the rest do not wait for their own deadlines: they fail with the head, in the same turn
      for (const at of restAt) assert.ok(at - headAt < 20, `a queued request failed ${(at - headAt).toFixed(0)} ms after the head`)
      const [head, ...rest] = outcomes.map(reasonOf)
      assertError(head, RequestTimeoutError, 'ERR_REQUEST_TIMEOUT', /did not answer within 300 ms/)
      assert.equal((head as RequestTimeoutError).timeoutMs, 300)
      for (const err of rest) {
        assertError(err, ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
        assert.equal(err.cause, head)
      }
      assert.notEqual(conn.state, 'ready')
      proxy.blackHole(false)
      await waitForState(conn, 'ready')
      assert.equal((await conn.metaNoop()).status, 'MN')
    } finally {
      proxy.blackHole(false)
      await conn.close()
    }
  })

  test('connection - requests made after the timeout, while reconnecting, do not hang', async () => {
    const conn = connect(proxy, { requestTimeoutMs: 200, connectTimeoutMs: 500 })
    try {
      await conn.connect()
      proxy.blackHole(true)
      await rejectsWith(conn.metaNoop(), RequestTimeoutError, 'ERR_REQUEST_TIMEOUT')
      const t0 = performance.now()
      const outcomes = await settleAll([conn.metaNoop(), conn.version()])
      const elapsed = performance.now() - t0
      assert.ok(elapsed < 1200, `settled after ${elapsed.toFixed(0)} ms`)
      for (const o of outcomes) {
        // fail-fast while down, or the reconnect's own timeout while connecting
        const err = reasonOf(o)
        assert.ok(err instanceof ConnectionError, `got ${String(err)}`)
        assert.match(err.code, /^ERR_CONNECT(ION|_TIMEOUT)$/)
      }
    } finally {
      proxy.blackHole(false)
      await conn.close()
    }
  })
})

// ---------------------------------------------------------------------------
// fake server: malformed and hostile replies
// ---------------------------------------------------------------------------

describe('Connection - fake server', () => {
  test('connection - replies dribbled byte by byte are reassembled', async () => {
    const dribble = async (socket: net.Socket, text: string): Promise<void> => {
      for (const byte of Buffer.from(text, 'latin1')) {
        if (socket.destroyed) return
        socket.write(Buffer.from([byte]))
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
    let chain = Promise.resolve()
    const handler: FakeHandler = (socket, server) => {
      socket.setNoDelay(true)
      replyWith((line) => {
        let reply: string | null = null
        if (line === 'stats') reply = FAKE_STATS
        else if (line === 'stats settings') reply = FAKE_SETTINGS
        else if (line.startsWith('mg ')) reply = `VA 12 c7 t30 O${opaqueOf(line)}\r\nab\r\nEN\r\ncd\r\n\r\n`
        else if (line === 'mn') reply = 'MN\r\n'
        if (reply !== null) {
          const text = reply
          chain = chain.then(() => dribble(socket, text))
        }
        return null
      })(socket, server)
    }
    await withFake(handler, { connectTimeoutMs: 3000, requestTimeoutMs: 3000 }, async (conn) => {
      await conn.connect()
      assert.equal(conn.identity?.pid, 4242)
      assert.equal(conn.identity?.bootEpoch, 1795670520)
      assert.equal(conn.identity?.settings.temporary_ttl, '61')
      const [a, b, n] = await Promise.all([conn.metaGet(uniqueKey('a'), ['v']), conn.metaGet(uniqueKey('b'), ['v']), conn.metaNoop()])
      for (const r of [a, b]) {
        assert.equal(r.status, 'VA')
        assert.equal(r.value?.toString('latin1'), 'ab\r\nEN\r\ncd\r\n')
        assert.equal(r.flags.c, '7')
      }
      assert.equal(n.status, 'MN')
    })
  })

  test('connection - a garbage reply is a ProtocolError and the connection is closed', async () => {
    await withFake(fakeMemcached((line) => (line.startsWith('mg ') ? 'HELLO THERE\r\n' : null)), async (conn, fake) => {
      await conn.connect()
      const outcomes = await settleAll([conn.metaGet(uniqueKey('garbage'), ['v']), conn.metaNoop()])
      assertError(reasonOf(outcomes[0]), ProtocolError, 'ERR_PROTOCOL', /HELLO THERE/)
      assertError(reasonOf(outcomes[1]), ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
      await waitForClose(fake.connections[0] as net.Socket)
      assert.notEqual(conn.state, 'ready')
    })
  })

  test('connection - replies that arrive in the same chunk before garbage are still delivered', async () => {
    let first: string | undefined
    const handler = fakeMemcached((line) => {
      if (!line.startsWith('mg ')) return null
      if (first === undefined) {
        first = opaqueOf(line)
        return null
      }
      // one write: a valid reply for the first request, then garbage for the second
      return `EN O${first}\r\nGARBAGE\r\n`
    })
    await withFake(handler, async (conn, fake) => {
      await conn.connect()
      const [ok, bad, after] = await settleAll([
        conn.metaGet(uniqueKey('before-garbage'), ['v']),
        conn.metaGet(uniqueKey('garbage'), ['v']),
        conn.metaNoop(),
      ])
      assert.equal(ok?.status, 'fulfilled', `the valid reply was lost: ${String((ok as PromiseRejectedResult).reason)}`)
      assert.equal((ok as PromiseFulfilledResult<MetaReply>).value.status, 'EN')
      assertError(reasonOf(bad), ProtocolError, 'ERR_PROTOCOL', /GARBAGE/)
      assertError(reasonOf(after), ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
      await waitForClose(fake.connections[0] as net.Socket)
    })
  })

  test('connection - a reply with the wrong opaque is a ProtocolError and the connection is closed', async () => {
    await withFake(fakeMemcached((line) => (line.startsWith('mg ') ? `EN O${Number(opaqueOf(line)) + 1}\r\n` : null)), async (conn, fake) => {
      await conn.connect()
      const err = await rejectsWith(conn.metaGet(uniqueKey('opaque'), ['v']), ProtocolError, 'ERR_PROTOCOL', /does not match its request/)
      assert.ok(err)
      await waitForClose(fake.connections[0] as net.Socket)
      assert.notEqual(conn.state, 'ready')
    })
  })

  test('connection - a meta reply without an opaque is a ProtocolError', async () => {
    await withFake(fakeMemcached((line) => (line.startsWith('mg ') ? 'EN\r\n' : null)), async (conn, fake) => {
      await conn.connect()
      await rejectsWith(conn.metaGet(uniqueKey('no-opaque'), ['v']), ProtocolError, 'ERR_PROTOCOL')
      await waitForClose(fake.connections[0] as net.Socket)
    })
  })

  test('connection - a reply of the wrong kind is a ProtocolError', async () => {
    await withFake(fakeMemcached((line) => (line === 'version' ? 'MN\r\n' : null)), async (conn, fake) => {
      await conn.connect()
      await rejectsWith(conn.version(), ProtocolError, 'ERR_PROTOCOL', /expected VERSION/)
      await waitForClose(fake.connections[0] as net.Socket)
    })
  })

  test('connection - a reply nobody asked for closes the connection', async () => {
    await withFake(fakeMemcached(answerMiss), async (conn, fake) => {
      await conn.connect()
      const down = waitForEvent<[Error]>(conn, 'down')
      ;(fake.connections[0] as net.Socket).write('MN\r\n')
      const [err] = await down
      assertError(err, ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
      assertError(err.cause, ProtocolError, 'ERR_PROTOCOL', /nobody asked for/)
      await waitForClose(fake.connections[0] as net.Socket)
    })
  })

  test('connection - after bursts are answered, their kept slots neither answer a reply nobody asked for nor lose a request', async () => {
    await withFake(fakeMemcached(answerMiss), async (conn, fake) => {
      await conn.connect()
      // two bursts of different sizes: the second reuses the first one's slots, then ends short of them
      for (const size of [64, 40]) {
        const replies = await Promise.all(Array.from({ length: size }, (_, i) => conn.metaGet(uniqueKey(`kept-${size}-${i}`), ['v'])))
        assert.deepEqual(
          replies.map((r) => r.status),
          Array.from({ length: size }, () => 'EN'),
        )
      }
      assert.equal((await conn.metaNoop()).status, 'MN')
      const down = waitForEvent<[Error]>(conn, 'down')
      ;(fake.connections[0] as net.Socket).write('MN\r\n')
      const [err] = await down
      assertError(err.cause, ProtocolError, 'ERR_PROTOCOL', /nobody asked for/)
    })
  })

  test('connection - CLIENT_ERROR is a ServerError and the connection is closed', async () => {
    await withFake(fakeMemcached((line) => (line.startsWith('mg ') ? 'CLIENT_ERROR bad command line format\r\n' : answerMiss(line))), async (conn, fake) => {
      await conn.connect()
      const outcomes = await settleAll([conn.metaGet(uniqueKey('client-error'), ['v']), conn.metaNoop()])
      const err = reasonOf(outcomes[0])
      assertError(err, ServerError, 'ERR_SERVER', /bad command line format/)
      assert.equal((err as ServerError).kind, 'CLIENT_ERROR')
      assertError(reasonOf(outcomes[1]), ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
      await waitForClose(fake.connections[0] as net.Socket)
      assert.notEqual(conn.state, 'ready')
    })
  })

  test('connection - ERROR is a ServerError and the connection is closed', async () => {
    await withFake(fakeMemcached((line) => (line.startsWith('mg ') ? 'ERROR\r\n' : answerMiss(line))), async (conn, fake) => {
      await conn.connect()
      const err = await rejectsWith(conn.metaGet(uniqueKey('error'), ['v']), ServerError, 'ERR_SERVER')
      assert.equal((err as ServerError).kind, 'ERROR')
      await waitForClose(fake.connections[0] as net.Socket)
    })
  })

  test('connection - SERVER_ERROR is a ServerError and the connection stays usable', async () => {
    let n = 0
    const handler = fakeMemcached((line) => (line.startsWith('mg ') && ++n === 1 ? 'SERVER_ERROR out of memory storing object\r\n' : answerMiss(line)))
    await withFake(handler, async (conn, fake) => {
      await conn.connect()
      const [oom, next, noop] = await settleAll([conn.metaGet(uniqueKey('oom'), ['v']), conn.metaGet(uniqueKey('after'), ['v']), conn.metaNoop()])
      const err = reasonOf(oom)
      assertError(err, ServerError, 'ERR_SERVER', /out of memory storing object/)
      assert.equal((err as ServerError).kind, 'SERVER_ERROR')
      assert.equal(next?.status, 'fulfilled')
      assert.equal((next as PromiseFulfilledResult<MetaReply>).value.status, 'EN')
      assert.equal((noop as PromiseFulfilledResult<MetaReply>).value.status, 'MN')
      assert.equal(conn.state, 'ready')
      assert.equal((await conn.metaNoop()).status, 'MN')
      assert.equal(fake.connections.length, 1, 'no reconnect')
      assert.equal(conn.generation, 1)
    })
  })

  test('connection - a disconnect in the middle of a reply is a ConnectionClosedError', async () => {
    const handler = fakeMemcached((line, socket) => {
      if (!line.startsWith('mg ')) return answerMiss(line)
      socket.write(`VA 10 O${opaqueOf(line)}\r\nabc`)
      setTimeout(() => socket.destroy(), 20)
      return null
    })
    await withFake(handler, async (conn, fake) => {
      await conn.connect()
      const t0 = performance.now()
      const outcomes = await settleAll([conn.metaGet(uniqueKey('mid-reply'), ['v']), conn.metaNoop()])
      assert.ok(performance.now() - t0 < 1000, 'well before the 2000 ms request timeout')
      for (const o of outcomes) assertError(reasonOf(o), ConnectionClosedError, 'ERR_CONNECTION_CLOSED')
      // it reconnects by itself
      await waitForState(conn, 'ready')
      assert.equal(fake.connections.length, 2)
      assert.equal(conn.generation, 2)
    })
  })

  test('connection - the server closing the socket between replies fails nothing and reconnects', async () => {
    await withFake(fakeMemcached(answerMiss), async (conn, fake) => {
      await conn.connect()
      assert.equal((await conn.metaNoop()).status, 'MN')
      const down = waitForEvent<[Error]>(conn, 'down')
      ;(fake.connections[0] as net.Socket).end()
      await down
      await waitForState(conn, 'ready')
      assert.equal((await conn.metaGet(uniqueKey('again'), ['v'])).status, 'EN')
      assert.equal(conn.identity?.pid, 4242)
    })
  })

  test('connection - after a burst the event loop polls for a bounded time, then sleeps although replies are still due', async () => {
    // a hang guard, not a speed test: a poll that never stopped would keep the loop busy (utilization near 1)
    await withFake(fakeMemcached(() => null), { requestTimeoutMs: 1500, burstPollMicros: 2000 }, async (conn) => {
      await conn.connect()
      const requests = Array.from({ length: 64 }, (_, i) => conn.metaGet(uniqueKey(`p${i}`), ['v']))
      const settled = Promise.allSettled(requests)
      await new Promise((resolve) => setTimeout(resolve, 50))
      const start = performance.eventLoopUtilization()
      await new Promise((resolve) => setTimeout(resolve, 300))
      const busy = performance.eventLoopUtilization(start).utilization
      assert.ok(busy < 0.5, `event loop utilization ${busy.toFixed(2)} while 64 requests waited unanswered`)
      const results = await settled
      assert.ok(results.every((r) => r.status === 'rejected' && (r.reason instanceof RequestTimeoutError || r.reason instanceof ConnectionClosedError)))
    })
  })

  test('connection - 64 requests in one turn go out in at most two writes', async () => {
    await withFake(fakeMemcached(answerMiss), async (conn, fake) => {
      await conn.connect()
      const socket = fake.connections[0] as net.Socket
      let chunks = 0
      socket.on('data', () => chunks++)
      const replies = await Promise.all(Array.from({ length: 64 }, (_, i) => conn.metaGet(uniqueKey(`w${i}`), ['v'])))
      assert.equal(replies.length, 64)
      assert.ok(replies.every((r) => r.status === 'EN'))
      assert.ok(chunks >= 1 && chunks <= 2, `the server received ${chunks} chunks`)
      const lines = fake.receivedText.split('\r\n').filter((l) => l.startsWith('mg '))
      assert.equal(lines.length, 64)
      const opaques = lines.map(opaqueOf).map(Number)
      assert.equal(new Set(opaques).size, 64)
      assert.deepEqual(
        replies.map((r) => Number(r.flags.O)),
        opaques,
      )
    })
  })

  test('connection - close() rejects pending requests with ClosedError, and later ones too', async () => {
    await withFake(fakeMemcached(() => null), { requestTimeoutMs: 5000 }, async (conn, fake) => {
      await conn.connect()
      const pending = [conn.metaGet(uniqueKey('pending'), ['v']), conn.metaNoop(), conn.version(), conn.stats()]
      const checked = pending.map((p) => rejectsWith(p, ClosedError, 'ERR_CLOSED'))
      await fake.waitForReceived('version\r\n')
      const t0 = performance.now()
      await conn.close()
      assert.ok(performance.now() - t0 < 1000, 'well before the 2000 ms request timeout')
      await Promise.all(checked)
      assert.equal(conn.state, 'closed')
      await rejectsWith(conn.metaNoop(), ClosedError, 'ERR_CLOSED')
      await rejectsWith(conn.connect(), ClosedError, 'ERR_CLOSED')
      await conn.close() // idempotent
      await waitForClose(fake.connections[0] as net.Socket)
    })
  })

  test('connection - close() while connecting rejects queued requests with ClosedError', async () => {
    await withFake(blackHole(), { connectTimeoutMs: 2000 }, async (conn, fake) => {
      const queued = rejectsWith(conn.metaNoop(), ClosedError, 'ERR_CLOSED')
      const connecting = conn.connect()
      connecting.catch(() => {})
      await fake.waitForReceived('stats settings\r\n')
      await conn.close()
      await queued
      await rejectsWith(connecting, ClosedError, 'ERR_CLOSED', /closed while connecting/)
      assert.equal(conn.state, 'closed')
    })
  })

  test('connection - a handshake without pid/time/uptime is refused', async () => {
    const handler = replyWith((line) => (line === 'stats' ? 'STAT version 1.6.18\r\nEND\r\n' : line === 'stats settings' ? FAKE_SETTINGS : null))
    await withFake(handler, async (conn) => {
      const err = await rejectsWith(conn.connect(), ConnectionError, 'ERR_CONNECTION', /handshake/)
      assertError(err.cause, ProtocolError, 'ERR_PROTOCOL', /lack pid\/time\/uptime/)
    })
  })
})
