/**
 * One server, one socket, many requests in flight. Requests are written in order (the requests
 * made in one turn of the event loop share socket writes, 32 at most: see #write) and replies
 * are matched to them in order, with the `O` opaque token checked on every meta reply. The connection
 * reconnects by itself with capped, jittered backoff and reads the server's identity (`stats`:
 * pid and boot epoch) every time it connects, so upper layers can tell a restart from a blip.
 */
import { EventEmitter } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import {
  AuthError,
  ClosedError,
  ConnectionClosedError,
  ConnectionError,
  ConnectTimeoutError,
  ProtocolError,
  RequestTimeoutError,
  ServerError,
  type MemcachedLockError,
} from '../errors.js'
import { ReplyDecoder, type MetaReply, type Reply, type StatsReply } from '../protocol/decoder.js'
import {
  encodeAuth,
  encodeMetaArithmetic,
  encodeMetaDelete,
  encodeMetaGet,
  encodeMetaNoop,
  encodeMetaSet,
  encodeStats,
  encodeVersion,
} from '../protocol/encoder.js'
import type { WireKey } from '../protocol/keys.js'
import { formatAddress, type ServerAddress } from './server-address.js'
import { stripUndefined } from '../internal/objects.js'
import { PromisePool } from '../internal/promise-pool.js'

/** Options of one connection. Times in milliseconds, except `burstPollMicros`. */
export interface ConnectionOptions {
  /** Time allowed for TCP connect, TLS handshake, authentication and the identity read. @default 2000 */
  connectTimeoutMs?: number
  /** Time allowed for each reply once its request is written. The connection is closed after a timeout. @default 2000 */
  requestTimeoutMs?: number
  /** `true` for TLS with default options, or `node:tls` connect options (`ca`, `servername`...). @default false */
  tls?: boolean | tls.ConnectionOptions
  /** Credentials for servers started with `-Y <authfile>`. @default none */
  auth?: { username: string; password: string }
  /** First reconnect delay; doubles (with full jitter) up to `reconnectMaxDelayMs`. @default 50 */
  reconnectMinDelayMs?: number
  /** Longest pause between reconnect attempts. @default 2000 */
  reconnectMaxDelayMs?: number
  /**
   * After a burst (a socket write of 32 requests), keep the event loop polling for the replies,
   * instead of letting it sleep, for up to this many microseconds (it stops as soon as nothing
   * is in flight). Waking a sleeping thread when the replies arrive costs 10-20 µs on small
   * VMs; polling costs CPU time while this process would otherwise be idle. Lone requests and
   * small bursts never poll. 0 turns it off. @default 100
   */
  burstPollMicros?: number
}

/** Who the server is: changes of `pid` or `bootEpoch` mean it restarted and forgot every lock. */
export interface ServerIdentity {
  readonly pid: number
  /** `time - uptime` from `stats`: the server's start, in Unix seconds. */
  readonly bootEpoch: number
  /** Seconds the server has been up, when the identity was read. */
  readonly uptime: number
  /** The server's `time` (Unix seconds) when the identity was read. */
  readonly time: number
  readonly version: string
  /** `stats settings`, for the eviction check. */
  readonly settings: Readonly<Record<string, string>>
}

/** Connection state, as reported by `state` and the `state` event. */
export type ConnectionState = 'idle' | 'connecting' | 'ready' | 'down' | 'closed'

type Expect = 'meta' | 'stats' | 'version' | 'auth'

interface Pending {
  readonly expect: Expect
  /** The `O` token sent, none for `mn` and the handshake. */
  readonly opaque: number | undefined
  readonly resolve: (reply: Reply) => void
  readonly reject: (err: MemcachedLockError) => void
  /** Time allowed for the reply, counted from the socket write. */
  readonly timeoutMs: number
  /** The socket write that carries the request (set when it is queued; its time when written). */
  sent: WriteTime
}

/**
 * When one socket write went out (performance.now()), shared by the requests it carries: one
 * clock read and one number per write, not one per request. NaN until written.
 */
class WriteTime {
  at = Number.NaN
}

/** The write of requests not queued yet. */
const UNSENT = new WriteTime()

/** performance.now() by which a written request's reply must be in. */
function deadlineOf(p: Pending): number {
  return p.sent.at + p.timeoutMs
}

interface Queued {
  readonly text: string
  readonly pending: Pending
}

/**
 * `O` tokens cycle through 1..OPAQUE_CYCLE-1 (the encoder makes each token's line end once, so a
 * request costs no number-to-string conversion). Replies are matched in order and each is checked
 * against its own token, so a reply stream out of step by fewer than OPAQUE_CYCLE-1 replies is
 * caught at its first reply; a shift by exactly that many would need as many requests in flight
 * on one connection.
 */
const OPAQUE_CYCLE = 4096

/**
 * The promises requests hand out, shared by every connection: up to 64 are made while the thread
 * waits for replies, so a burst of requests does not make them on its way to the socket write.
 * Every promise is made with one executor (no closure and context per request: with one, each
 * request allocated about 120 bytes more and 64 concurrent requests measured 1-7% slower,
 * docs/PERFORMANCE.md, session 8). Made ahead, with the byte decoder of session 11, they took
 * the CPU time of a batch of 64 concurrent requests from 64-80 µs to 53-66 µs (three pairs).
 */
const replyPromises = new PromisePool<Reply, MemcachedLockError>(64)

/**
 * How many requests of one burst are gathered before they are written without waiting for the
 * turn to end (#write). A write costs this thread 5-20 µs on the 2-vCPU VMs this was measured
 * on, while memcached spends about 0.5-1 µs on each pipelined request: a slice of 32 gives
 * memcached more work than the next write costs, and lets it start while the rest of the burst
 * is made. Measured on 64 concurrent requests against one write per turn and slices of 8 to 48
 * (docs/PERFORMANCE.md, session 9).
 */
const WRITE_SLICE = 32

/** Slots of the in-flight array kept for the next burst once everything is answered (a larger array is let go). */
const INFLIGHT_KEPT = 4096

/** Bytes read from the socket at once (plain TCP reads into one buffer per connection, see #open). */
const READ_BUFFER_BYTES = 64 * 1024

const DEFAULTS = {
  connectTimeoutMs: 2000,
  requestTimeoutMs: 2000,
  reconnectMinDelayMs: 50,
  reconnectMaxDelayMs: 2000,
  burstPollMicros: 100,
}

/**
 * Events: `state` (state), `ready` (identity, { restarted }), `down` (error), `restart`
 * (previous identity, new identity).
 */
export class Connection extends EventEmitter {
  readonly address: ServerAddress
  /** `host:port`. */
  readonly name: string
  readonly #opts: Required<Omit<ConnectionOptions, 'tls' | 'auth'>> & Pick<ConnectionOptions, 'tls' | 'auth'>
  #state: ConnectionState = 'idle'
  #socket: net.Socket | null = null
  #decoder = new ReplyDecoder()
  /** Plain TCP reads land here (no Buffer per read); the decoder copies what it keeps. */
  #readBuffer: Buffer | null = null
  /**
   * Requests written, waiting for replies, oldest first: slots `#inflightHead` to `#inflightEnd`.
   * Every other slot is undefined (answered ones are cleared at once), and the array keeps its
   * length when everything is answered, so the next burst reuses its slots instead of growing it
   * again (up to INFLIGHT_KEPT slots are kept).
   */
  #inflight: (Pending | undefined)[] = []
  #inflightHead = 0
  #inflightEnd = 0
  /** Requests made while connecting: written once the handshake is done. */
  #waiting: Queued[] = []
  /** The text of the requests queued for the next write, how many they are, and that write's time. */
  #outText = ''
  #outCount = 0
  #outTime = UNSENT
  #timer: NodeJS.Timeout | null = null
  #reconnectTimer: NodeJS.Timeout | null = null
  #attempt = 0
  #opaque = 0
  #generation = 0
  #identity: ServerIdentity | null = null
  #lastError: Error | null = null
  #connectPromise: Promise<void> | null = null
  /** When the connection last broke or a connect attempt failed (performance.now). */
  #failedAt = -Infinity
  /** Until when (performance.now) the event loop is kept polling after a burst (see burstPollMicros), and whether it is. */
  #pollUntil = 0
  #polling = false

  constructor(address: ServerAddress, options: ConnectionOptions = {}) {
    super()
    this.address = address
    this.name = formatAddress(address)
    this.#opts = { ...DEFAULTS, ...stripUndefined(options) }
  }

  get state(): ConnectionState {
    return this.#state
  }

  /** Increases on every successful (re)connect; a lease taken under an older generation needs re-verification. */
  get generation(): number {
    return this.#generation
  }

  /** The identity read at the latest connect, or null before the first. */
  get identity(): ServerIdentity | null {
    return this.#identity
  }

  /** Why the server is down, when it is. */
  get lastError(): Error | null {
    return this.#lastError
  }

  get requestTimeoutMs(): number {
    return this.#opts.requestTimeoutMs
  }

  /** Connects now (requests also connect on demand). Resolves when ready; rejects with a {@link ConnectionError}. */
  connect(): Promise<void> {
    if (this.#state === 'closed') return Promise.reject(new ClosedError(`connection to ${this.name} is closed`))
    if (this.#state === 'ready') return Promise.resolve()
    if (this.#connectPromise) return this.#connectPromise
    if (this.#reconnectTimer) {
      clearTimeout(this.#reconnectTimer)
      this.#reconnectTimer = null
    }
    const p = this.#open()
    this.#connectPromise = p
    const clear = (): void => {
      if (this.#connectPromise === p) this.#connectPromise = null
    }
    p.then(clear, clear)
    return p
  }

  /** `ms`: meta set. */
  metaSet(key: WireKey, value: string, flags: readonly string[]): Promise<MetaReply> {
    const o = this.#nextOpaque()
    return this.#request(encodeMetaSet(key, value, flags, o), 'meta', o) as Promise<MetaReply>
  }

  /** `mg`: meta get. */
  metaGet(key: WireKey, flags: readonly string[]): Promise<MetaReply> {
    const o = this.#nextOpaque()
    return this.#request(encodeMetaGet(key, flags, o), 'meta', o) as Promise<MetaReply>
  }

  /** `md`: meta delete. */
  metaDelete(key: WireKey, flags: readonly string[]): Promise<MetaReply> {
    const o = this.#nextOpaque()
    return this.#request(encodeMetaDelete(key, flags, o), 'meta', o) as Promise<MetaReply>
  }

  /** `ma`: meta arithmetic. */
  metaArithmetic(key: WireKey, flags: readonly string[]): Promise<MetaReply> {
    const o = this.#nextOpaque()
    return this.#request(encodeMetaArithmetic(key, flags, o), 'meta', o) as Promise<MetaReply>
  }

  /** `mn`: resolves once every earlier request has been answered. */
  metaNoop(): Promise<MetaReply> {
    return this.#request(encodeMetaNoop(), 'meta', undefined) as Promise<MetaReply>
  }

  /** `version`: the server's version string. */
  async version(): Promise<string> {
    const r = await this.#request(encodeVersion(), 'version', undefined)
    return (r as { version: string }).version
  }

  /** `stats` or `stats settings`, as a name-to-value record. */
  async stats(group?: 'settings'): Promise<Record<string, string>> {
    const r = await this.#request(encodeStats(group), 'stats', undefined)
    return (r as StatsReply).stats
  }

  /** Closes the socket; every request not yet answered fails with {@link ConnectionClosedError}. No reconnect. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return
    this.#setState('closed')
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer)
    this.#reconnectTimer = null
    const sock = this.#socket
    this.#socket = null
    const err = new ClosedError(`connection to ${this.name} was closed by the client`)
    this.#failInflight(err)
    const waiting = this.#waiting
    this.#waiting = []
    for (const q of waiting) q.pending.reject(err)
    if (sock && !sock.destroyed) {
      await new Promise<void>((resolve) => {
        sock.once('close', () => resolve())
        sock.end()
        setTimeout(() => sock.destroy(), 200).unref()
      })
    }
  }

  /** The next `O` token. */
  #nextOpaque(): number {
    return (this.#opaque = this.#opaque >= OPAQUE_CYCLE - 1 ? 1 : this.#opaque + 1)
  }

  #request(text: string, expect: Expect, opaque: number | undefined): Promise<Reply> {
    const promise = replyPromises.take()
    const pending: Pending = { expect, opaque, resolve: replyPromises.resolve, reject: replyPromises.reject, timeoutMs: this.#opts.requestTimeoutMs, sent: UNSENT }
    switch (this.#state) {
      case 'ready':
        this.#write(text, pending)
        break
      case 'closed':
        pending.reject(new ClosedError(`connection to ${this.name} is closed`))
        break
      case 'down':
        // probe on demand (at most once per reconnectMinDelayMs), so a server that is back is
        // used at once rather than after the backoff; otherwise fail fast: a lock must not wait on a dead server
        if (!this.#connectPromise && performance.now() - this.#failedAt >= this.#opts.reconnectMinDelayMs) {
          this.#waiting.push({ text, pending })
          this.connect().catch(() => {})
          break
        }
        pending.reject(
          new ConnectionError(`memcached server ${this.name} is down (reconnecting)`, this.name, {
            cause: this.#lastError ?? undefined,
          }),
        )
        break
      default:
        this.#waiting.push({ text, pending })
        if (this.#state === 'idle') this.connect().catch(() => {})
    }
    return promise
  }

  /**
   * Queues a request for writing. The requests made in one turn of the event loop go out together
   * on `process.nextTick`, after the turn's promise continuations have run, so a lone request
   * waits no longer than that and a small burst costs one system call. Whenever WRITE_SLICE
   * requests are queued they are written at once, while the turn goes on: memcached starts on
   * them while this thread makes the rest, and what is left at the end of the turn goes out then
   * (64 requests: two writes of 32; 100: 32, 32, 32 and 4). The first request after a write
   * schedules the next one (a flush that finds nothing to write returns: after a slice, or after
   * #failInflight emptied the queue). The texts are joined as they come (`+=`, which V8 keeps as
   * a rope that the socket write flattens once), not gathered in an array for `join`, which cost
   * more.
   */
  #write(text: string, pending: Pending): void {
    this.#inflight[this.#inflightEnd++] = pending
    if (this.#outCount === 0) {
      this.#outText = text
      this.#outTime = new WriteTime()
      process.nextTick(this.#flush)
    } else {
      this.#outText += text
    }
    pending.sent = this.#outTime
    if (++this.#outCount >= WRITE_SLICE) this.#flush()
  }

  /** Writes the queued requests (the newest in flight) and starts their reply clocks. */
  readonly #flush = (): void => {
    if (this.#outCount === 0) return
    const text = this.#outText
    const time = this.#outTime
    const count = this.#outCount
    this.#outText = ''
    this.#outCount = 0
    const sock = this.#socket
    if (sock && !sock.destroyed) sock.write(text)
    time.at = performance.now()
    if (this.#timer === null) this.#armTimer()
    if (count >= WRITE_SLICE && this.#opts.burstPollMicros > 0) {
      this.#pollUntil = time.at + this.#opts.burstPollMicros / 1000
      if (!this.#polling) {
        this.#polling = true
        setImmediate(this.#poll)
      }
    }
  }

  /**
   * Keeps the event loop from sleeping while a burst's replies are due: a pending immediate makes
   * libuv poll the sockets without blocking, so replies are read as they arrive, without the
   * wake-up of a sleeping thread (10-20 µs on the 2-vCPU VMs: 64 concurrent requests went from
   * 0.93 to 1.13 of the raw loop, for 20-30 µs more CPU per batch, docs/PERFORMANCE.md, session
   * 11). Other callbacks run as usual; it stops at #pollUntil, or as soon as nothing is in flight.
   */
  readonly #poll = (): void => {
    // (nothing is in flight without a socket: #drop and close() fail what was)
    if (this.#inflightHead !== this.#inflightEnd && performance.now() < this.#pollUntil) {
      setImmediate(this.#poll)
    } else {
      this.#polling = false
    }
  }

  #armTimer(): void {
    const head = this.#inflight[this.#inflightHead]
    if (!head) {
      this.#timer = null
      return
    }
    const delay = Math.max(0, deadlineOf(head) - performance.now())
    this.#timer = setTimeout(this.#onTimer, Math.ceil(delay) + 1)
    this.#timer.unref()
  }

  readonly #onTimer = (): void => {
    this.#timer = null
    const head = this.#inflight[this.#inflightHead]
    if (!head) return
    if (performance.now() >= deadlineOf(head)) {
      const err = new RequestTimeoutError(
        `memcached server ${this.name} did not answer within ${this.#opts.requestTimeoutMs} ms`,
        this.name,
        this.#opts.requestTimeoutMs,
      )
      this.#takeHead()
      head.reject(err)
      // the reply may still come and would be matched to the wrong request: drop the stream
      this.#drop(err)
      return
    }
    this.#armTimer()
  }

  async #open(): Promise<void> {
    this.#setState('connecting')
    this.#decoder = new ReplyDecoder()
    const { host, port } = this.address
    const tlsOpt = this.#opts.tls
    const started = performance.now()
    let sock: net.Socket
    try {
      sock = await new Promise<net.Socket>((resolve, reject) => {
        // plain TCP reads into one buffer through `onread`, without the stream's Buffer and
        // 'data' event per read (TLS sockets decrypt into their own buffers: 'data' below)
        const readBuffer = tlsOpt ? null : (this.#readBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES))
        const s: net.Socket = readBuffer
          ? net.connect({
              host,
              port,
              onread: {
                buffer: readBuffer,
                callback: (bytes: number): boolean => {
                  if (this.#socket === s) this.#onData(readBuffer.subarray(0, bytes))
                  return true
                },
              },
            })
          : tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...(tlsOpt === true ? {} : tlsOpt) })
        const timer = setTimeout(() => {
          s.destroy()
          reject(new ConnectTimeoutError(`connecting to ${this.name} took longer than ${this.#opts.connectTimeoutMs} ms`, this.name))
        }, this.#opts.connectTimeoutMs)
        const fail = (err: Error): void => {
          clearTimeout(timer)
          s.destroy()
          reject(new ConnectionError(`cannot connect to memcached at ${this.name}: ${err.message}`, this.name, { cause: err }))
        }
        s.once('error', fail)
        s.once(tlsOpt ? 'secureConnect' : 'connect', () => {
          clearTimeout(timer)
          s.off('error', fail)
          resolve(s)
        })
      })
    } catch (err) {
      this.#connectFailed(err as ConnectionError)
      throw err
    }
    if (this.#state === 'closed') {
      sock.destroy()
      throw new ClosedError(`connection to ${this.name} was closed while connecting`)
    }
    sock.setNoDelay(true)
    sock.setKeepAlive(true, 10_000)
    this.#socket = sock
    // events of a socket that has since been replaced must not touch the new one
    if (tlsOpt) {
      sock.on('data', (chunk: Buffer) => {
        if (this.#socket === sock) this.#onData(chunk)
      })
    }
    sock.on('error', (err) => {
      if (this.#socket === sock) this.#drop(err)
    })
    sock.on('close', () => {
      if (this.#socket === sock) this.#drop(new Error('socket closed'))
    })

    // handshake: auth, identity and settings, pipelined in one write
    const remaining = Math.max(1, this.#opts.connectTimeoutMs - (performance.now() - started))
    let timer: NodeJS.Timeout | undefined
    try {
      const steps: Promise<Reply>[] = []
      const auth = this.#opts.auth
      if (auth) steps.push(this.#handshakeRequest(encodeAuth(auth.username, auth.password), 'auth'))
      steps.push(this.#handshakeRequest(encodeStats(), 'stats'))
      steps.push(this.#handshakeRequest(encodeStats('settings'), 'stats'))
      const all = Promise.all(steps)
      all.catch(() => {})
      const replies = await Promise.race([
        all,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new ConnectTimeoutError(`memcached at ${this.name} did not finish the handshake within ${this.#opts.connectTimeoutMs} ms`, this.name)),
            remaining,
          )
        }),
      ])
      // the timer still waits for a handshake deadline (connectTimeoutMs); nothing is in flight now,
      // and the next request must be timed by requestTimeoutMs, which may be shorter
      if (this.#timer) clearTimeout(this.#timer)
      this.#timer = null
      const stats = (replies[replies.length - 2] as StatsReply).stats
      const settings = (replies[replies.length - 1] as StatsReply).stats
      const identity = readIdentity(stats, settings, this.name)
      const previous = this.#identity
      this.#identity = identity
      this.#generation++
      this.#attempt = 0
      this.#lastError = null
      this.#setState('ready')
      const restarted = previous !== null && (previous.pid !== identity.pid || previous.bootEpoch !== identity.bootEpoch)
      if (restarted) this.emit('restart', previous, identity)
      this.emit('ready', identity, { restarted })
      const waiting = this.#waiting
      this.#waiting = []
      for (const q of waiting) this.#write(q.text, q.pending)
    } catch (err) {
      const e =
        this.state === 'closed'
          ? new ClosedError(`connection to ${this.name} was closed while connecting`, { cause: err })
          : err instanceof AuthError || err instanceof ConnectionError
          ? err
          : new ConnectionError(`handshake with memcached at ${this.name} failed: ${(err as Error).message}`, this.name, { cause: err })
      if (this.#socket === sock) this.#socket = null
      sock.destroy()
      this.#failInflight(e)
      this.#connectFailed(e)
      throw e
    } finally {
      clearTimeout(timer)
    }
  }

  #handshakeRequest(text: string, expect: Expect): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      // the handshake is bounded by connectTimeoutMs (its own timer in #open), not requestTimeoutMs
      this.#write(text, { expect, opaque: undefined, resolve, reject, timeoutMs: this.#opts.connectTimeoutMs, sent: UNSENT })
    })
  }

  #connectFailed(err: MemcachedLockError): void {
    this.#lastError = err
    this.#failedAt = performance.now()
    if (this.#state === 'closed') return
    const waiting = this.#waiting
    this.#waiting = []
    for (const q of waiting) q.pending.reject(err)
    this.#setState('down')
    this.emit('down', err)
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    if (this.#state === 'closed' || this.#reconnectTimer) return
    const cap = Math.min(this.#opts.reconnectMaxDelayMs, this.#opts.reconnectMinDelayMs * 2 ** Math.min(this.#attempt, 16))
    // the first retry after losing a working connection is immediate-ish; later ones back off with full jitter
    const delay = this.#attempt === 0 ? Math.min(10, cap) : Math.random() * cap
    this.#attempt++
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null
      if (this.#state === 'closed' || this.#connectPromise) return
      this.connect().catch(() => {})
    }, delay)
    this.#reconnectTimer.unref()
  }

  #onData(chunk: Buffer): void {
    const replies: Reply[] = []
    let garbage: ProtocolError | null = null
    try {
      this.#decoder.push(chunk, replies)
    } catch (err) {
      // the replies decoded before the garbage are still answers to their requests: deliver them
      garbage = err as ProtocolError
    }
    for (const reply of replies) {
      const p = this.#takeHead()
      if (!p) {
        this.#drop(new ProtocolError(`memcached at ${this.name} sent a reply nobody asked for (${reply.kind})`))
        return
      }
      const err = this.#check(p, reply)
      if (err) {
        p.reject(err)
        if (!(err instanceof ServerError && err.kind === 'SERVER_ERROR')) {
          // CLIENT_ERROR/ERROR or a mismatched reply: the stream may be out of sync
          this.#drop(err)
          return
        }
      } else {
        p.resolve(reply)
      }
    }
    if (garbage) {
      this.#takeHead()?.reject(garbage)
      this.#drop(garbage)
      return
    }
    const head = this.#inflightHead
    if (head === this.#inflightEnd) {
      this.#inflightHead = this.#inflightEnd = 0
      if (this.#inflight.length > INFLIGHT_KEPT) this.#inflight = []
    } else if (head > 1024 && head * 2 > this.#inflightEnd) {
      this.#inflight = this.#inflight.slice(head, this.#inflightEnd)
      this.#inflightEnd -= head
      this.#inflightHead = 0
    }
  }

  /**
   * The oldest request in flight, taken out of the queue (its slot cleared at once, so a kept
   * slot never holds a request that is no longer in flight), or undefined when none is.
   */
  #takeHead(): Pending | undefined {
    const p = this.#inflight[this.#inflightHead]
    if (p) this.#inflight[this.#inflightHead++] = undefined
    return p
  }

  #check(p: Pending, reply: Reply): MemcachedLockError | null {
    if (reply.kind === 'error') {
      if (p.expect === 'auth') return new AuthError(`memcached at ${this.name} refused the credentials: ${reply.type} ${reply.message}`.trim(), this.name)
      if (reply.message === 'unauthenticated') {
        return new AuthError(`memcached at ${this.name} requires authentication (started with -Y): set the auth option`, this.name)
      }
      return new ServerError(reply.type, reply.message, this.name)
    }
    switch (p.expect) {
      case 'meta':
        if (reply.kind !== 'meta') return new ProtocolError(`expected a meta reply from ${this.name}, got ${reply.kind}`)
        if (p.opaque === undefined ? reply.status !== 'MN' : reply.opaque !== p.opaque) {
          return new ProtocolError(
            `reply from ${this.name} does not match its request (opaque ${p.opaque ?? 'mn'}, got ${reply.status} O${reply.opaque ?? '-'})`,
          )
        }
        return null
      case 'stats':
        return reply.kind === 'stats' ? null : new ProtocolError(`expected stats from ${this.name}, got ${reply.kind}`)
      case 'version':
        return reply.kind === 'version' ? null : new ProtocolError(`expected VERSION from ${this.name}, got ${reply.kind}`)
      case 'auth':
        return reply.kind === 'word' && reply.word === 'STORED'
          ? null
          : new ProtocolError(`expected STORED to set auth from ${this.name}, got ${reply.kind}`)
    }
  }

  /** The socket is gone or untrustworthy: fail everything in flight, then reconnect. */
  #drop(cause: Error): void {
    const sock = this.#socket
    if (!sock) return
    this.#socket = null
    sock.destroy()
    const wasReady = this.#state === 'ready'
    const err =
      cause instanceof ClosedError
        ? cause
        : new ConnectionClosedError(`connection to memcached at ${this.name} broke: ${cause.message}`, this.name, { cause })
    this.#lastError = err
    this.#failedAt = performance.now()
    this.#failInflight(err)
    if (this.#state === 'closed') return
    if (wasReady) {
      this.#attempt = 0
      this.#setState('down')
      this.emit('down', err)
      this.#scheduleReconnect()
    }
  }

  #failInflight(err: MemcachedLockError): void {
    const inflight = this.#inflight
    const head = this.#inflightHead
    const end = this.#inflightEnd
    this.#inflight = []
    this.#inflightHead = this.#inflightEnd = 0
    this.#outText = ''
    this.#outCount = 0
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    for (let i = head; i < end; i++) (inflight[i] as Pending).reject(err)
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return
    this.#state = state
    this.emit('state', state)
  }
}

function readIdentity(stats: Record<string, string>, settings: Record<string, string>, name: string): ServerIdentity {
  const pid = Number(stats.pid)
  const time = Number(stats.time)
  const uptime = Number(stats.uptime)
  if (!Number.isInteger(pid) || !Number.isInteger(time) || !Number.isInteger(uptime)) {
    throw new ProtocolError(`stats from ${name} lack pid/time/uptime`)
  }
  return { pid, time, uptime, bootEpoch: time - uptime, version: stats.version ?? 'unknown', settings }
}

