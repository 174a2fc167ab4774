/**
 * A real TCP proxy on 127.0.0.1 for fault tests: put it between a client and a
 * memcached and inject latency, partitions, cuts, throttling and refusals.
 *
 * Each accepted client socket gets its own upstream socket to `target`. Bytes
 * flow through one queue per direction, so latency and throttling keep order.
 */
import net from 'node:net';

export type ProxyDirection = 'toClient' | 'toServer';

/**
 * How `blackHole(true)` treats traffic: `'drop'` discards it (a partition that
 * loses data), `'hold'` queues it and delivers it once the black hole is lifted
 * (a stalled link).
 */
export type BlackHoleMode = 'drop' | 'hold';

interface CutRule {
  remaining: number;
}

class Pipe {
  readonly #queue: { data: Buffer; due: number }[] = [];
  #timer: NodeJS.Timeout | undefined;
  #ended = false;
  #endForwarded = false;
  #tokens = 0;
  #tokensAt = Date.now();

  constructor(
    readonly proxy: TcpProxy,
    readonly conn: Connection,
    readonly direction: ProxyDirection,
    readonly dst: net.Socket,
  ) {}

  push(data: Buffer): void {
    if (this.proxy.blackHoleState === 'drop') return;
    this.#queue.push({ data, due: Date.now() + this.proxy.latencyMs });
    this.pump();
  }

  /** Source sent FIN: forward it once everything queued has gone out. */
  end(): void {
    this.#ended = true;
    this.pump();
  }

  pump(): void {
    if (this.#timer || this.conn.closed) return;
    while (this.#queue.length > 0) {
      if (this.proxy.blackHoleState !== null) return; // resumed by blackHole(false)
      if (this.dst.destroyed || this.dst.writableEnded) {
        this.#queue.length = 0; // the other side is gone: nowhere to deliver
        return;
      }
      const head = this.#queue[0]!;
      const now = Date.now();
      if (head.due > now) return this.#wake(head.due - now);

      let chunk = head.data;
      const rate = this.proxy.bytesPerSecond;
      if (rate !== null) {
        const burst = Math.max(1, Math.floor(rate / 20));
        this.#tokens = Math.min(burst, this.#tokens + ((now - this.#tokensAt) * rate) / 1000);
        this.#tokensAt = now;
        const allowed = Math.floor(this.#tokens);
        if (allowed < 1) return this.#wake(Math.max(1, Math.ceil(((1 - this.#tokens) * 1000) / rate)));
        if (chunk.length > allowed) chunk = chunk.subarray(0, allowed);
        this.#tokens -= chunk.length;
      }

      const cut = this.proxy.cutRule(this.direction);
      if (cut && chunk.length >= cut.remaining) {
        const last = chunk.subarray(0, cut.remaining);
        this.proxy.clearCutRule(this.direction);
        this.#queue.length = 0;
        this.conn.cutAfterWrite(this.dst, last);
        return;
      }
      if (cut) cut.remaining -= chunk.length;

      this.dst.write(chunk);
      if (chunk.length === head.data.length) this.#queue.shift();
      else head.data = head.data.subarray(chunk.length);
    }
    if (this.#ended && !this.#endForwarded && this.proxy.blackHoleState === null) {
      this.#endForwarded = true;
      if (!this.dst.destroyed) this.dst.end();
    }
  }

  clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
  }

  #wake(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.pump();
    }, ms);
  }
}

class Connection {
  closed = false;
  readonly toServer: Pipe;
  readonly toClient: Pipe;

  constructor(
    readonly proxy: TcpProxy,
    readonly client: net.Socket,
    readonly upstream: net.Socket,
  ) {
    this.toServer = new Pipe(proxy, this, 'toServer', upstream);
    this.toClient = new Pipe(proxy, this, 'toClient', client);

    client.on('data', (d: Buffer) => this.toServer.push(d));
    upstream.on('data', (d: Buffer) => this.toClient.push(d));
    client.on('end', () => this.toServer.end());
    upstream.on('end', () => this.toClient.end());
    client.on('error', () => this.destroy());
    upstream.on('error', () => this.destroy());
    // An abrupt close cuts the pair; a clean close of both sides just retires it.
    const onClose = (hadError: boolean): void => {
      if (hadError || (client.destroyed && upstream.destroyed)) this.destroy();
    };
    client.on('close', onClose);
    upstream.on('close', onClose);
  }

  /** Write the final bytes to `dst`, then cut the whole connection. */
  cutAfterWrite(dst: net.Socket, last: Buffer): void {
    this.toServer.clear();
    this.toClient.clear();
    if (last.length === 0) return this.destroy();
    dst.write(last, () => this.destroy());
  }

  pumpAll(): void {
    this.toServer.pump();
    this.toClient.pump();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.toServer.clear();
    this.toClient.clear();
    this.client.destroy();
    this.upstream.destroy();
    this.proxy.forget(this);
  }
}

export class TcpProxy {
  readonly host = '127.0.0.1';
  readonly target: { host: string; port: number };
  /** Connections accepted since start (refused ones included). */
  acceptedCount = 0;

  latencyMs = 0;
  bytesPerSecond: number | null = null;
  /** null when traffic flows; otherwise the active black-hole mode. */
  blackHoleState: BlackHoleMode | null = null;

  readonly #server: net.Server;
  readonly #port: number;
  readonly #connections = new Set<Connection>();
  #refusing = false;
  readonly #cuts: Partial<Record<ProxyDirection, CutRule>> = {};

  private constructor(server: net.Server, port: number, target: { host: string; port: number }) {
    this.#server = server;
    this.#port = port;
    this.target = { host: target.host, port: target.port };
  }

  get port(): number {
    return this.#port;
  }

  /** `"127.0.0.1:PORT"` */
  get address(): string {
    return `${this.host}:${this.#port}`;
  }

  /** Client connections currently proxied. */
  get activeConnections(): number {
    return this.#connections.size;
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = net.createServer({ allowHalfOpen: true });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.removeListener('error', reject);
        const addr = server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : 0);
      });
    });
    const proxy = new TcpProxy(server, port, target);
    server.on('connection', (client) => proxy.#accept(client));
    return proxy;
  }

  /** Delay every chunk by `ms` in each direction (round trip grows by 2 × ms). */
  setLatency(ms: number): void {
    this.latencyMs = Math.max(0, ms);
  }

  /**
   * Stop forwarding in both directions while keeping every socket open (a
   * partition). New connections are accepted and black-holed too.
   * `mode` 'drop' (default) discards traffic; 'hold' delivers it when lifted.
   */
  blackHole(on: boolean, mode: BlackHoleMode = 'drop'): void {
    this.blackHoleState = on ? mode : null;
    if (!on) for (const conn of this.#connections) conn.pumpAll();
  }

  /** Destroy every client and upstream socket now. */
  cutAll(): void {
    for (const conn of [...this.#connections]) conn.destroy();
  }

  /**
   * Forward `n` more bytes in `direction` (counted across connections), then
   * destroy the connection that carried the last of them. One-shot.
   */
  cutAfterBytes(n: number, direction: ProxyDirection): void {
    this.#cuts[direction] = { remaining: Math.max(0, Math.floor(n)) };
    if (n <= 0) {
      // Nothing more may pass: cut whatever is open now.
      delete this.#cuts[direction];
      this.cutAll();
    }
  }

  /** Limit each direction of each connection to `bytesPerSecond`; null lifts it. */
  throttle(bytesPerSecond: number | null): void {
    this.bytesPerSecond = bytesPerSecond === null ? null : Math.max(1, bytesPerSecond);
    for (const conn of this.#connections) conn.pumpAll();
  }

  /** While on, new connections are accepted and immediately destroyed. */
  refuse(on: boolean): void {
    this.#refusing = on;
  }

  /** Stop listening and destroy every socket. */
  close(): Promise<void> {
    this.cutAll();
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
    });
  }

  /** @internal */
  cutRule(direction: ProxyDirection): CutRule | undefined {
    return this.#cuts[direction];
  }

  /** @internal */
  clearCutRule(direction: ProxyDirection): void {
    delete this.#cuts[direction];
  }

  /** @internal */
  forget(conn: Connection): void {
    this.#connections.delete(conn);
  }

  #accept(client: net.Socket): void {
    this.acceptedCount++;
    client.on('error', () => {});
    if (this.#refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    const conn = new Connection(this, client, upstream);
    this.#connections.add(conn);
  }
}
