#!/usr/bin/env node
// Client overhead against a bare socket: how much does `Connection` (queue, opaque checks,
// timeouts, batching) cost over the cheapest possible meta-protocol loop?
//
//   npm run build && node bench/client.mjs [--requests N] [--rounds N] [--model] [--json]
//
// Starts its own memcached (from PATH, or $MEMCACHED_BIN) on a free loopback port and stops it
// by PID at the end, also on errors and signals. Three measurements, each interleaved over 9
// rounds by default (raw then client, client then raw, ...; more with --rounds give steadier
// medians), on fresh connections for both sides in every round (memcached gives each connection
// one of its worker threads, and where the kernel runs that thread moves the round trip a lot on
// a small VM), medians reported:
//   sequential  one `mg <k> v c t` at a time: a raw net.Socket loop vs `await conn.metaGet()`
//   batch64     64 requests at a time: raw = 64 `mg` in ONE write, then wait for 64 replies;
//               client = Promise.all of 64 `conn.metaGet()` (the client batches them itself,
//               and keeps the event loop polling for up to 100 µs after such a burst, where the
//               raw loop sleeps until its replies wake it: see model-poll)
//   inflight64  64 requests always in flight: raw = every data event that completes k replies
//               writes k new requests (one write); client = 64 loops of `await conn.metaGet()`
// With --model, three more rows for reference: the raw loop itself (one write after all 64
// requests are made), made to do part of what a client must do (no other change). A client that writes
// while it still makes requests can beat them: this one writes the first 32 requests of a burst
// at once and the rest at the end of the turn, so memcached works while the rest are made
// (sessions 5-7 wrote slices of 20, session 8 one write per turn; docs/PERFORMANCE.md):
//   model-promises  one promise per request, resolved as its reply is counted, awaited with
//                   Promise.all: the promise plumbing of the client row, and nothing else (the
//                   output also gives the client's ratio over this row's: what the client costs
//                   beyond the promises its API hands out)
//   model-costs     15 µs busy-waited before each write (building 64 requests, ~0.23 µs each)
//                   and 0.2 µs per reply after each data event (decoding): the costs this client
//                   had before session 5 (docs/PERFORMANCE.md), kept as a reference point
//   model-poll      the raw loop keeping the event loop polling (a chain of setImmediate) for up
//                   to 100 µs after its write, as the client does after a burst (burstPollMicros):
//                   what that technique alone is worth (the output also gives the client's ratio
//                   over this row's)
// Every row also gives the CPU time of this process (user + system, process.cpuUsage) per request
// or batch: polling spends CPU that would otherwise be idle, and the columns show how much.
import { execFileSync, spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { Connection, encodeKey } from '../dist/esm/index.js'

const DEFAULT_ROUNDS = 9
const BATCH = 64
const HOST = '127.0.0.1'

// ---------------------------------------------------------------------------
// arguments
// ---------------------------------------------------------------------------

function usage(error) {
  const text = `usage: node bench/client.mjs [--requests N] [--rounds N] [--model] [--json]
  --requests N  requests per measurement and round (default 20000; batch64 rounds up to a multiple of 64)
  --rounds N    interleaved rounds, an odd number from 3 to 99 (default ${DEFAULT_ROUNDS}); medians over them
  --model       also run the raw batch loop with a client's modelled costs and techniques (see the file's header)
  --json        print one JSON document on stdout instead of the table`
  if (error) {
    console.error(`bench/client: ${error}\n${text}`)
    process.exit(2)
  }
  console.log(text)
  process.exit(0)
}

function parseArgs(argv) {
  const o = { requests: 20_000, rounds: DEFAULT_ROUNDS, json: false, model: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--json') o.json = true
    else if (a === '--model') o.model = true
    else if (a === '--requests' || a.startsWith('--requests=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i]
      const n = Number(v)
      if (!Number.isInteger(n) || n < BATCH) usage(`--requests expects an integer >= ${BATCH}, got ${JSON.stringify(v ?? '')}`)
      o.requests = n
    } else if (a === '--rounds' || a.startsWith('--rounds=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i]
      const n = Number(v)
      if (!Number.isInteger(n) || n < 3 || n > 99 || n % 2 === 0) usage(`--rounds expects an odd integer from 3 to 99, got ${JSON.stringify(v ?? '')}`)
      o.rounds = n
    } else if (a === '--help' || a === '-h') usage()
    else usage(`unknown argument ${JSON.stringify(a)}`)
  }
  return o
}

const log = (msg) => process.stderr.write(`[bench/client] ${msg}\n`)

// ---------------------------------------------------------------------------
// memcached: started here, stopped by PID
// ---------------------------------------------------------------------------

function memcachedBinary() {
  const candidates = process.env.MEMCACHED_BIN
    ? [process.env.MEMCACHED_BIN]
    : [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((d) => path.join(d, 'memcached')), '/usr/bin/memcached']
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {
      // next
    }
  }
  throw new Error('memcached not found: install it (apt-get install memcached) or set MEMCACHED_BIN')
}

function runAsUser() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null
  try {
    execFileSync('id', ['-u', 'memcache'], { stdio: 'ignore' })
    return 'memcache'
  } catch {
    return 'nobody'
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, HOST, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

let child = null

function alive(c) {
  return c !== null && c.exitCode === null && c.signalCode === null
}

/** Synchronous, by PID only: safe in 'exit' and signal handlers. */
function killServerSync() {
  if (alive(child)) {
    try {
      process.kill(child.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

async function stopServer() {
  if (!alive(child)) return
  const c = child
  const exited = new Promise((resolve) => c.once('exit', resolve))
  process.kill(c.pid, 'SIGTERM')
  const timer = setTimeout(() => alive(c) && process.kill(c.pid, 'SIGKILL'), 2000)
  await exited
  clearTimeout(timer)
}

process.on('exit', killServerSync)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    const code = 128 + { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[sig]
    if (alive(child)) {
      // SIGKILL and wait for the exit, so that the child is reaped here and not left a zombie
      const c = child
      c.once('exit', () => process.exit(code))
      killServerSync()
      setTimeout(() => process.exit(code), 1000).unref()
    } else {
      process.exit(code)
    }
  })
}

async function startServer() {
  const bin = memcachedBinary()
  const version = execFileSync(bin, ['-V'], { encoding: 'utf8' }).trim()
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const args = ['-l', HOST, '-p', String(port), '-U', '0', '-m', '64']
    const user = runAsUser()
    if (user) args.push('-u', user)
    child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (d) => (stderr += d))
    const deadline = Date.now() + 5000
    while (Date.now() < deadline && alive(child)) {
      if (await probe(port)) return { port, version, args: args.join(' ') }
      await new Promise((r) => setTimeout(r, 25))
    }
    await stopServer()
    if (!/address already in use/i.test(stderr)) throw new Error(`memcached did not start: ${stderr.trim() || 'no output'}`)
  }
  throw new Error('memcached did not start: no free port')
}

function probe(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port })
    const done = (ok) => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(500, () => done(false))
    s.once('error', () => done(false))
    s.once('connect', () => s.write('version\r\n'))
    s.once('data', (d) => done(d.toString().startsWith('VERSION ')))
  })
}

// ---------------------------------------------------------------------------
// the raw floor: a bare socket that counts whole `mg` replies (VA with data, or a one-line reply)
// ---------------------------------------------------------------------------

class RawSocket {
  #sock
  #buf = Buffer.alloc(0)
  #want = 0
  #got = 0
  #resolve = null
  #onReplies = null
  #perReply = 0
  /** sendEach: the resolvers of the requests, by reply number. */
  #each = null

  static connect(port) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: HOST, port })
      sock.once('error', reject)
      sock.once('connect', () => {
        sock.off('error', reject)
        sock.setNoDelay(true)
        resolve(new RawSocket(sock))
      })
    })
  }

  constructor(sock) {
    this.#sock = sock
    sock.on('data', (chunk) => this.#onData(chunk))
    sock.on('error', (err) => log(`raw socket error: ${err.message}`))
  }

  /**
   * Keeps `depth` requests (`line`) in flight until `total` replies have arrived: every data
   * event that completes k replies writes k new requests (one write). Resolves at the end.
   */
  stream(line, depth, total) {
    this.#want = total
    this.#got = 0
    let sent = depth
    this.#onReplies = (k) => {
      const more = Math.min(k, total - sent)
      if (more > 0) {
        sent += more
        this.#sock.write(more === 1 ? line : line.repeat(more))
      }
    }
    return new Promise((resolve) => {
      this.#resolve = () => {
        this.#onReplies = null
        resolve()
      }
      this.#sock.write(line.repeat(depth))
    })
  }

  /**
   * Writes `text` (one write) and resolves when `replies` whole replies have arrived. `model`
   * (µs, busy-waited): `build` before the write, `perReply` after each data event per reply.
   */
  send(text, replies, model = null) {
    this.#want = replies
    this.#got = 0
    this.#perReply = model?.perReply ?? 0
    return new Promise((resolve) => {
      let done = false
      this.#resolve = () => {
        done = true
        resolve()
      }
      if (model?.build) busyWait(model.build)
      this.#sock.write(text)
      if (model?.poll) {
        // as Connection#poll: a pending immediate keeps libuv from sleeping in epoll_wait
        const until = performance.now() + model.poll / 1000
        const poll = () => {
          if (!done && performance.now() < until) setImmediate(poll)
        }
        setImmediate(poll)
      }
    })
  }

  /** Like `send`, with one promise per request, each resolved as its reply is counted; resolves with Promise.all of them. */
  sendEach(text, replies) {
    this.#want = replies
    this.#got = 0
    const each = []
    const promises = []
    for (let i = 0; i < replies; i++) promises.push(new Promise((resolve) => each.push(resolve)))
    const all = Promise.all(promises)
    this.#each = each
    this.#resolve = () => (this.#each = null)
    this.#sock.write(text)
    return all
  }

  #onData(chunk) {
    let buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk
    let pos = 0
    const before = this.#got
    for (;;) {
      const lf = buf.indexOf(10, pos)
      if (lf === -1) break
      let end = lf + 1
      if (buf[pos] === 0x56 && buf[pos + 1] === 0x41) {
        // "VA <len> ...": skip the data block and its CRLF
        let len = 0
        for (let i = pos + 3; buf[i] >= 0x30 && buf[i] <= 0x39; i++) len = len * 10 + (buf[i] - 0x30)
        end = lf + 1 + len + 2
        if (end > buf.length) break
      } else if (buf[pos] !== 0x45 && buf[pos] !== 0x48) {
        throw new Error(`raw: unexpected reply ${JSON.stringify(buf.toString('latin1', pos, lf))}`)
      }
      pos = end
      if (this.#each) this.#each[this.#got]()
      this.#got++
    }
    this.#buf = pos < buf.length ? buf.subarray(pos) : Buffer.alloc(0)
    if (this.#perReply > 0) busyWait(this.#perReply * (this.#got - before))
    if (this.#onReplies && this.#got > before && this.#got < this.#want) this.#onReplies(this.#got - before)
    if (this.#got >= this.#want && this.#resolve) {
      const r = this.#resolve
      this.#resolve = null
      r()
    }
  }

  close() {
    this.#sock.destroy()
  }
}

// ---------------------------------------------------------------------------
// measurements
// ---------------------------------------------------------------------------

/** Spends `micros` µs of CPU: a stand-in for a client's own work in the --model rows. */
function busyWait(micros) {
  const until = performance.now() + micros / 1000
  while (performance.now() < until);
}

/** Wall seconds and CPU seconds (this process, user + system) of `fn`. */
async function timed(fn) {
  const c0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  await fn()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(c0)
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 }
}

function median(values) {
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Modelled client costs of the --model rows, in µs (the client's before session 5: docs/PERFORMANCE.md). */
const MODEL_BUILD_US = 15
const MODEL_DECODE_US_PER_REPLY = 0.2
/** How long the --model poll row keeps the event loop polling after its write: Connection's default burstPollMicros. */
const MODEL_POLL_US = 100

/** `s.raw` and `s.conn` are read at each call: they are replaced by fresh connections every round. */
function makeRunners(s, key, wireKey, model) {
  const line = `mg ${key} v c t\r\n`
  const batchText = line.repeat(BATCH)
  const flags = ['v', 'c', 't']
  const batchRaw = async (n) => {
    for (let i = 0; i < n / BATCH; i++) await s.raw.send(batchText, BATCH)
  }
  return {
    sequential: {
      raw: async (n) => {
        for (let i = 0; i < n; i++) await s.raw.send(line, 1)
      },
      client: async (n) => {
        for (let i = 0; i < n; i++) {
          const r = await s.conn.metaGet(wireKey, flags)
          if (r.status !== 'VA') throw new Error(`client: unexpected ${r.status}`)
        }
      },
    },
    batch64: {
      raw: batchRaw,
      client: async (n) => {
        for (let i = 0; i < n / BATCH; i++) {
          // a plain loop: Array.from({ length: 64 }, fn) alone costs about 5 µs per batch on the
          // 2.1 GHz Xeon VM (its generic array-like path), which is the harness, not the client
          const pending = []
          for (let j = 0; j < BATCH; j++) pending.push(s.conn.metaGet(wireKey, flags))
          const replies = await Promise.all(pending)
          if (replies.length !== BATCH || replies[BATCH - 1].status !== 'VA') throw new Error('client: bad batch')
        }
      },
    },
    ...(model && {
      modelPromises: {
        raw: batchRaw,
        client: async (n) => {
          for (let i = 0; i < n / BATCH; i++) await s.raw.sendEach(batchText, BATCH)
        },
      },
      modelCosts: {
        raw: batchRaw,
        client: async (n) => {
          for (let i = 0; i < n / BATCH; i++) await s.raw.send(batchText, BATCH, { build: MODEL_BUILD_US, perReply: MODEL_DECODE_US_PER_REPLY })
        },
      },
      modelPoll: {
        raw: batchRaw,
        client: async (n) => {
          for (let i = 0; i < n / BATCH; i++) await s.raw.send(batchText, BATCH, { poll: MODEL_POLL_US })
        },
      },
    }),
    inflight64: {
      raw: (n) => s.raw.stream(line, BATCH, n),
      client: async (n) => {
        let left = n
        const worker = async () => {
          while (left > 0) {
            left--
            const r = await s.conn.metaGet(wireKey, flags)
            if (r.status !== 'VA') throw new Error(`client: unexpected ${r.status}`)
          }
        }
        await Promise.all(Array.from({ length: BATCH }, worker))
      },
    },
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const server = await startServer()
  log(`${server.version} on ${HOST}:${server.port} (pid ${child.pid})`)
  // memcached hands each connection to one of its worker threads, and where the kernel runs that
  // thread (next to this process or not) changes round trips a lot on a small VM; fresh
  // connections for both sides in every round and scenario spread that over the rounds
  const s = {
    raw: null,
    conn: null,
    async open() {
      this.raw = await RawSocket.connect(server.port)
      this.conn = new Connection({ host: HOST, port: server.port }, { requestTimeoutMs: 5000 })
      await this.conn.connect()
    },
    async close() {
      this.raw?.close()
      await this.conn?.close()
      this.raw = this.conn = null
    },
  }
  await s.open()
  try {
    const key = `bench:client:${process.pid}`
    const wireKey = encodeKey('', key)
    const value = 'x'.repeat(32)
    const set = await s.conn.metaSet(wireKey, value, ['T0'])
    if (set.status !== 'HD') throw new Error(`could not store the bench key: ${set.status}`)

    const runners = makeRunners(s, key, wireKey, opts.model)
    const batched = Math.ceil(opts.requests / BATCH) * BATCH
    const counts = { sequential: opts.requests, batch64: batched, modelPromises: batched, modelCosts: batched, modelPoll: batched, inflight64: opts.requests * 4 }
    const perBatch = (name) => name === 'batch64' || name.startsWith('model')
    // warm-up: JIT and socket buffers, not measured
    for (const name of Object.keys(runners)) {
      await runners[name].raw(Math.min(counts[name], 2048))
      await runners[name].client(Math.min(counts[name], 2048))
    }

    const samples = Object.fromEntries(Object.keys(runners).map((name) => [name, { raw: [], client: [], rawCpu: [], clientCpu: [] }]))
    const started = Date.now()
    for (let round = 1; round <= opts.rounds; round++) {
      for (const name of Object.keys(runners)) {
        await s.close()
        await s.open()
        for (const side of round % 2 ? ['raw', 'client'] : ['client', 'raw']) {
          await runners[name][side](counts[name]) // the fresh sockets settle: one unmeasured pass
          const { seconds, cpuSeconds } = await timed(() => runners[name][side](counts[name]))
          samples[name][side].push(counts[name] / seconds)
          samples[name][`${side}Cpu`].push(cpuSeconds / counts[name])
        }
      }
      log(`round ${round}/${opts.rounds} done (${((Date.now() - started) / 1000).toFixed(1)} s)`)
    }

    const results = Object.keys(samples).map((name) => {
      const rawOps = median(samples[name].raw)
      const clientOps = median(samples[name].client)
      const unit = perBatch(name) ? BATCH : 1
      return {
        scenario: name,
        requests: counts[name],
        rawOpsPerSec: Math.round(rawOps),
        clientOpsPerSec: Math.round(clientOps),
        // per request (sequential) or per batch of 64 (batch64), in microseconds
        rawMicros: Number(((1e6 / rawOps) * unit).toFixed(1)),
        clientMicros: Number(((1e6 / clientOps) * unit).toFixed(1)),
        ratio: Number((clientOps / rawOps).toFixed(3)),
        // CPU time of this process per request or batch, in microseconds (medians over the rounds)
        rawCpuMicros: Number((median(samples[name].rawCpu) * 1e6 * unit).toFixed(1)),
        clientCpuMicros: Number((median(samples[name].clientCpu) * 1e6 * unit).toFixed(1)),
        rounds: { raw: samples[name].raw.map(Math.round), client: samples[name].client.map(Math.round) },
      }
    })

    // with --model: the client's ratio over the ratio of the raw loop that does nothing but keep a
    // promise per request (both as in the table): what the client costs beyond the promises its
    // API must hand out
    const ratioOf = (name) => results.find((r) => r.scenario === name).ratio
    const vsModel = opts.model ? Number((ratioOf('batch64') / ratioOf('modelPromises')).toFixed(3)) : undefined
    // and over the ratio of the raw loop that polls after its write as the client does after a
    // burst: what the client costs beyond that technique
    const vsPoll = opts.model ? Number((ratioOf('batch64') / ratioOf('modelPoll')).toFixed(3)) : undefined
    const meta = { memcached: server.version, node: process.version, rounds: opts.rounds, batch: BATCH, requests: opts.requests }
    if (opts.json) {
      console.log(
        JSON.stringify({ ...meta, results, ...(vsModel !== undefined && { clientVsPromiseModel: vsModel, clientVsPollModel: vsPoll }) }, null, 2),
      )
    } else {
      console.log(`${server.version}, node ${process.version}, ${opts.rounds} interleaved rounds, medians; ratio = client/raw ops/s`)
      const rows = [
        ['scenario', 'requests', 'raw ops/s', 'client ops/s', 'raw µs', 'client µs', 'client/raw', 'raw cpu µs', 'client cpu µs'],
        ...results.map((r) => [
          {
            sequential: 'sequential mg k v c t',
            batch64: '64 concurrent mg (batches)',
            modelPromises: 'model: raw + a promise per request',
            modelCosts: `model: raw + ${MODEL_BUILD_US} µs + ${MODEL_DECODE_US_PER_REPLY} µs/reply`,
            modelPoll: `model: raw + polling ${MODEL_POLL_US} µs after the write`,
            inflight64: '64 in flight (continuous)',
          }[r.scenario],
          String(r.requests),
          r.rawOpsPerSec.toLocaleString('en-US'),
          r.clientOpsPerSec.toLocaleString('en-US'),
          `${r.rawMicros}${perBatch(r.scenario) ? '/batch' : '/op'}`,
          `${r.clientMicros}${perBatch(r.scenario) ? '/batch' : '/op'}`,
          r.ratio.toFixed(2),
          String(r.rawCpuMicros),
          String(r.clientCpuMicros),
        ]),
      ]
      const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)))
      for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '))
      if (vsModel !== undefined) {
        console.log(`64 concurrent, client ratio / ratio of the raw loop with a promise per request: ${vsModel.toFixed(2)}`)
        console.log(`64 concurrent, client ratio / ratio of the raw loop that polls after its write: ${vsPoll.toFixed(2)}`)
      }
    }
  } finally {
    await s.close()
    await stopServer()
  }
}

main().catch(async (err) => {
  console.error(`bench/client: ${err.stack ?? err}`)
  await stopServer().catch(() => {})
  process.exit(1)
})
