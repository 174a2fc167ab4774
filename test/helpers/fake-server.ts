/**
 * A scripted fake TCP server for protocol tests: the handler decides what to
 * answer (or not). Listens on 127.0.0.1, port 0.
 */
import net from 'node:net';

export type FakeHandler = (socket: net.Socket, server: FakeServer) => void;

export class FakeServer {
  readonly host = '127.0.0.1';
  /** Every accepted socket, in order (closed ones included). */
  readonly connections: net.Socket[] = [];
  /** All bytes received on all connections, concatenated in arrival order. */
  received: Buffer = Buffer.alloc(0);

  readonly #server: net.Server;
  readonly #port: number;
  #waiters = new Set<() => void>();

  private constructor(server: net.Server, port: number) {
    this.#server = server;
    this.#port = port;
  }

  get port(): number {
    return this.#port;
  }

  /** `"127.0.0.1:PORT"` */
  get address(): string {
    return `${this.host}:${this.#port}`;
  }

  /** `received` as a UTF-8 string. */
  get receivedText(): string {
    return this.received.toString('utf8');
  }

  static async start(handler: FakeHandler): Promise<FakeServer> {
    const server = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.removeListener('error', reject);
        const addr = server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : 0);
      });
    });
    const fake = new FakeServer(server, port);
    server.on('connection', (socket) => {
      fake.connections.push(socket);
      // Peers disconnecting abruptly must not crash the test process.
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        fake.received = Buffer.concat([fake.received, chunk]);
        fake.#notify();
      });
      fake.#notify();
      handler(socket, fake);
    });
    return fake;
  }

  /** Resolve once `predicate` holds (checked on every connection and every received chunk). */
  waitFor(predicate: (server: FakeServer) => boolean, timeoutMs = 2_000): Promise<void> {
    if (predicate(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (predicate(this)) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`FakeServer.waitFor timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  /** Resolve once `text` appears in everything received so far. */
  waitForReceived(text: string, timeoutMs = 2_000): Promise<void> {
    return this.waitFor((s) => s.receivedText.includes(text), timeoutMs);
  }

  /** Resolve once at least `n` connections were accepted. */
  waitForConnections(n: number, timeoutMs = 2_000): Promise<void> {
    return this.waitFor((s) => s.connections.length >= n, timeoutMs);
  }

  /** Destroy every socket and stop listening. */
  close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
    });
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

/**
 * Handler that splits input into lines (`\n`, with a trailing `\r` removed) and
 * writes `map(line)` back verbatim when it is not null. The reply must carry
 * its own `\r\n`. Data blocks of storage commands arrive as lines too.
 */
export function replyWith(map: (line: string) => string | Buffer | null): FakeHandler {
  return (socket) => {
    // Work on Buffers: setEncoding() here would also change what the server's
    // own `received` listener gets.
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      let idx: number;
      while ((idx = pending.indexOf(0x0a)) !== -1) {
        let end = idx;
        if (end > 0 && pending[end - 1] === 0x0d) end--;
        const line = pending.subarray(0, end).toString('utf8');
        pending = pending.subarray(idx + 1);
        const reply = map(line);
        if (reply !== null && !socket.destroyed) socket.write(reply);
      }
    });
  };
}

/** Handler that reads everything and never answers. */
export function blackHole(): FakeHandler {
  return (socket) => {
    socket.resume();
  };
}
