/**
 * Push wake-ups without pub/sub. memcached logs every store to connections that sent
 * `watch mutations`; a release written as a compare-and-expire store (`ms <k> T-1 C<cas>`)
 * shows up there as `key=<k> status=stored cmd=cas ttl=<negative, wrapped>`. One watcher
 * connection per server wakes every local waiter for a key within about one round trip of its
 * release. The stream is best effort (the server drops lines for slow readers; deletes and
 * expiries are not logged), so waiters always keep a polling deadline as well.
 */
import net from 'node:net'
import tls from 'node:tls'
import type { ConnectionOptions } from './connection.js'
import { encodeAuth, encodeWatch } from '../protocol/encoder.js'
import { decodeWireKey, type WireKey } from '../protocol/keys.js'
import { sleep } from '../internal/sleep.js'
import { WakeList } from '../internal/wake-list.js'
import type { ServerAddress } from './server-address.js'

/** Close the watch connection after this long without waiters. */
const IDLE_CLOSE_MS = 30_000
const MAX_LINE = 16 * 1024

export class ReleaseWatcher {
  readonly #address: ServerAddress
  readonly #opts: ConnectionOptions
  readonly #waiters = new WakeList(() => this.#armIdle())
  #socket: net.Socket | null = null
  #ready = false
  #pending = ''
  #idleTimer: NodeJS.Timeout | null = null
  #closed = false
  #retryAt = 0
  /** Last time (performance.now) another client failed to add each key: evidence of remote waiters. */
  readonly #contended = new Map<string, number>()

  constructor(address: ServerAddress, options: ConnectionOptions) {
    this.#address = address
    this.#opts = options
  }

  /** True while the watch stream is established. */
  get active(): boolean {
    return this.#ready
  }

  /** Resolves when `key` is released (as seen in the stream), after `timeoutMs`, or when `signal` aborts. */
  wait(key: WireKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.#closed || signal?.aborted) return sleep(signal?.aborted ? 0 : timeoutMs, signal)
    this.#ensureOpen()
    const id = decodeWireKey(key.wire, key.base64).toString('latin1')
    if (this.#idleTimer) {
      clearTimeout(this.#idleTimer)
      this.#idleTimer = null
    }
    return this.#waiters.wait(id, timeoutMs, signal)
  }

  /**
   * Whether the stream showed a failed add (`status=not_stored cmd=add`) of `key` after `since`
   * (performance.now time): someone else is waiting for it. Best effort: false when not watching.
   */
  contendedSince(key: WireKey, since: number): boolean {
    if (!this.#ready) return false
    const t = this.#contended.get(decodeWireKey(key.wire, key.base64).toString('latin1'))
    return t !== undefined && t >= since
  }

  close(): void {
    this.#closed = true
    this.#teardown()
    this.#waiters.wakeAll()
  }

  #ensureOpen(): void {
    if (this.#socket || this.#closed || performance.now() < this.#retryAt) return
    const { host, port } = this.#address
    const t = this.#opts.tls
    const sock = t
      ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...(t === true ? {} : t) })
      : net.connect({ host, port })
    this.#socket = sock
    this.#ready = false
    this.#pending = ''
    sock.setNoDelay(true)
    const timer = setTimeout(() => this.#fail(sock), this.#opts.connectTimeoutMs ?? 2000)
    timer.unref()
    sock.once(t ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer)
      const auth = this.#opts.auth
      sock.write((auth ? encodeAuth(auth.username, auth.password) : '') + encodeWatch(['mutations']))
    })
    sock.on('data', (chunk: Buffer) => this.#onData(sock, chunk))
    sock.on('error', () => this.#fail(sock))
    sock.on('close', () => this.#fail(sock))
  }

  #onData(sock: net.Socket, chunk: Buffer): void {
    if (this.#socket !== sock) return
    this.#pending += chunk.toString('latin1')
    let nl: number
    while ((nl = this.#pending.indexOf('\n')) !== -1) {
      const line = this.#pending.slice(0, nl).replace(/\r$/, '')
      this.#pending = this.#pending.slice(nl + 1)
      if (!this.#ready) {
        if (line === 'OK') this.#ready = true
        else if (line !== 'STORED') return this.#fail(sock)
        continue
      }
      this.#onLine(line)
    }
    if (this.#pending.length > MAX_LINE) this.#fail(sock)
  }

  #onLine(line: string): void {
    // ts=... gid=... type=item_store key=<url-encoded> status=stored cmd=cas ttl=4294967234 ...
    if (!line.includes('type=item_store')) return
    const key = /(?:^| )key=(\S+)/.exec(line)?.[1]
    if (key === undefined) return
    if (line.includes('status=not_stored') && line.includes('cmd=add')) {
      // another client's acquire failed: it waits for this key
      if (this.#contended.size > 10_000) this.#contended.clear()
      this.#contended.set(percentDecode(key), performance.now())
      return
    }
    if (!line.includes('status=stored')) return
    const ttl = Number(/(?:^| )ttl=(\d+)/.exec(line)?.[1])
    if (!(ttl >= 0x80000000)) return // only stores with a negative (wrapped) TTL are releases
    this.#waiters.wake(percentDecode(key))
  }

  #fail(sock: net.Socket): void {
    if (this.#socket !== sock) return
    this.#teardown()
    // waiters fall back to their own deadlines; try again a little later
    this.#retryAt = performance.now() + 1000
  }

  #teardown(): void {
    const s = this.#socket
    this.#socket = null
    this.#ready = false
    if (this.#idleTimer) clearTimeout(this.#idleTimer)
    this.#idleTimer = null
    s?.destroy()
  }

  #armIdle(): void {
    if (this.#idleTimer || !this.#socket) return
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null
      if (this.#waiters.size === 0) this.#teardown()
    }, IDLE_CLOSE_MS)
    this.#idleTimer.unref()
  }
}

/** memcached's logger percent-encodes keys; returns the key's bytes as a latin1 string. */
function percentDecode(s: string): string {
  if (!s.includes('%')) return s
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
}
