import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, describe, test } from 'node:test';

import { FakeServer, blackHole, replyWith } from '../helpers/fake-server.js';
import { MemcachedServer, memcachedSupportsTls, withMemcached } from '../helpers/memcached-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

// ---------------------------------------------------------------------------
// A tiny line client: send raw bytes, read CRLF lines with a timeout.
// ---------------------------------------------------------------------------

class LineClient {
  #buf = '';
  #lines: string[] = [];
  #waiters: (() => void)[] = [];
  closed = false;

  constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.#buf += chunk;
      let idx: number;
      while ((idx = this.#buf.indexOf('\r\n')) !== -1) {
        this.#lines.push(this.#buf.slice(0, idx));
        this.#buf = this.#buf.slice(idx + 2);
      }
      this.#wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  static connect(port: number): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(new LineClient(socket));
      });
      socket.once('error', reject);
    });
  }

  static connectTls(port: number, ca: string): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca });
      socket.once('secureConnect', () => {
        socket.removeListener('error', reject);
        resolve(new LineClient(socket));
      });
      socket.once('error', reject);
    });
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** Next line, or throws after `timeoutMs` / on close. */
  async line(timeoutMs = 2_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no line within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.#lines.shift()!;
  }

  async request(text: string, timeoutMs?: number): Promise<string> {
    this.send(text);
    return this.line(timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const value = await fn();
  return [value, performance.now() - t0];
}

function uniqueKey(name: string): string {
  return `harness-${name}-${process.pid}-${Date.now().toString(36)}`;
}

// ---------------------------------------------------------------------------

describe('memcached-server', () => {
  test('memcached-server - starts and answers version over a raw socket', async () => {
    await withMemcached(async (server) => {
      assert.equal(server.host, '127.0.0.1');
      assert.equal(server.address, `127.0.0.1:${server.port}`);
      assert.ok(server.pid > 0);
      assert.ok(pidAlive(server.pid));
      const client = await LineClient.connect(server.port);
      try {
        assert.match(await client.request('version\r\n'), /^VERSION 1\.6\.\d+/);
        // meta protocol works
        assert.equal(await client.request('mn\r\n'), 'MN');
      } finally {
        client.close();
      }
    });
  });

  test('memcached-server - stop terminates the process and is idempotent', async () => {
    const server = await MemcachedServer.start({ memoryMb: 16 });
    const pid = server.pid;
    await server.stop();
    assert.equal(server.running, false);
    assert.equal(pidAlive(pid), false);
    await server.stop();
    await assert.rejects(LineClient.connect(server.port));
  });

  test('memcached-server - restart keeps the port, changes the pid and loses data', async () => {
    const server = await MemcachedServer.start();
    try {
      const key = uniqueKey('restart');
      let client = await LineClient.connect(server.port);
      assert.equal(await client.request(`ms ${key} 2\r\nhi\r\n`), 'HD');
      client.close();

      const { port, pid } = server;
      await server.restart();
      assert.equal(server.port, port);
      assert.notEqual(server.pid, pid);
      assert.equal(pidAlive(pid), false);
      assert.ok(pidAlive(server.pid));

      client = await LineClient.connect(server.port);
      try {
        assert.equal(await client.request(`mg ${key} v\r\n`), 'EN');
      } finally {
        client.close();
      }
    } finally {
      await server.stop();
    }
  });

  test('memcached-server - kill is a crash and restart brings it back', async () => {
    const server = await MemcachedServer.start();
    try {
      const client = await LineClient.connect(server.port);
      const pid = server.pid;
      await server.kill();
      assert.equal(server.running, false);
      assert.equal(pidAlive(pid), false);
      await assert.rejects(client.line(2_000), /connection closed/);

      await server.restart();
      const again = await LineClient.connect(server.port);
      try {
        assert.match(await again.request('version\r\n'), /^VERSION /);
      } finally {
        again.close();
      }
    } finally {
      await server.stop();
    }
  });

  test('memcached-server - pause stops answers and resume delivers them', async () => {
    const server = await MemcachedServer.start();
    const client = await LineClient.connect(server.port);
    try {
      await server.pause();
      client.send('version\r\n');
      await assert.rejects(client.line(300), /no line within/);
      await server.resume();
      assert.match(await client.line(2_000), /^VERSION /);
    } finally {
      client.close();
      await server.stop();
    }
  });

  test('memcached-server - stop works on a paused server', async () => {
    const server = await MemcachedServer.start();
    await server.pause();
    const [, ms] = await timed(() => server.stop());
    assert.equal(server.running, false);
    assert.ok(ms < 2_500, `stop took ${ms} ms`);
  });

  test('memcached-server - extra args are passed through', async () => {
    // Default max item size is 1 MiB; `-I 2m` lets a 1.5 MiB value in.
    await withMemcached(
      async (server) => {
        const client = await LineClient.connect(server.port);
        try {
          const value = 'x'.repeat(1536 * 1024);
          const reply = await client.request(`ms ${uniqueKey('big')} ${value.length}\r\n${value}\r\n`);
          assert.equal(reply, 'HD');
        } finally {
          client.close();
        }
      },
      { args: ['-I', '2m'], memoryMb: 64 },
    );
  });

  test('memcached-server - memoryMb and default item size are applied', async () => {
    await withMemcached(
      async (server) => {
        const client = await LineClient.connect(server.port);
        try {
          const value = 'x'.repeat(1536 * 1024);
          const reply = await client.request(`ms ${uniqueKey('big')} ${value.length}\r\n${value}\r\n`);
          assert.match(reply, /^SERVER_ERROR/);
          client.send('stats settings\r\n');
          let line: string;
          const settings = new Map<string, string>();
          while ((line = await client.line()) !== 'END') {
            const [, name, val] = line.split(' ');
            settings.set(name!, val!);
          }
          assert.equal(settings.get('maxbytes'), String(16 * 1024 * 1024));
          assert.equal(settings.get('udpport'), '0');
        } finally {
          client.close();
        }
      },
      { memoryMb: 16 },
    );
  });

  test('memcached-server - auth rejects unauthenticated commands and accepts after set auth', async () => {
    await withMemcached(
      async (server) => {
        assert.deepEqual(server.auth, { username: 'locker', password: 's3cret-pw' });
        const anon = await LineClient.connect(server.port);
        try {
          assert.equal(await anon.request('mn\r\n'), 'CLIENT_ERROR unauthenticated');
          // version and stats are refused too before authenticating (1.6.18)
          assert.equal(await anon.request('version\r\n'), 'CLIENT_ERROR unauthenticated');
        } finally {
          anon.close();
        }

        const bad = await LineClient.connect(server.port);
        try {
          assert.equal(await bad.request('set auth 0 0 11\r\nlocker nope\r\n'), 'CLIENT_ERROR authentication failure');
          assert.equal(await bad.request('mn\r\n'), 'CLIENT_ERROR unauthenticated');
        } finally {
          bad.close();
        }

        const good = await LineClient.connect(server.port);
        try {
          const token = 'locker s3cret-pw';
          assert.equal(await good.request(`set auth 0 0 ${token.length}\r\n${token}\r\n`), 'STORED');
          assert.equal(await good.request('mn\r\n'), 'MN');
          assert.match(await good.request('version\r\n'), /^VERSION /);
        } finally {
          good.close();
        }
      },
      { auth: { username: 'locker', password: 's3cret-pw' } },
    );
  });

  test('memcached-server - auth server survives restart', async () => {
    const server = await MemcachedServer.start({ auth: { username: 'u1', password: 'p1' } });
    try {
      await server.restart();
      const client = await LineClient.connect(server.port);
      try {
        assert.equal(await client.request('set auth 0 0 5\r\nu1 p1\r\n'), 'STORED');
        assert.equal(await client.request('mn\r\n'), 'MN');
      } finally {
        client.close();
      }
    } finally {
      await server.stop();
    }
  });

  test('memcached-server - TLS server answers version with the generated CA', async (t) => {
    if (!(await memcachedSupportsTls())) {
      t.skip('memcached was built without TLS');
      return;
    }
    const server = await MemcachedServer.start({ tls: true });
    try {
      assert.ok(server.tlsCa?.includes('BEGIN CERTIFICATE'));
      const client = await LineClient.connectTls(server.port, server.tlsCa!);
      try {
        assert.match(await client.request('version\r\n'), /^VERSION /);
        assert.equal(await client.request('mn\r\n'), 'MN');
      } finally {
        client.close();
      }
      // Without the CA the self-signed certificate is rejected.
      await assert.rejects(
        new Promise((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: server.port }, () => resolve(s));
          s.once('error', reject);
        }),
        /self[- ]signed/i,
      );
      await server.restart();
      const again = await LineClient.connectTls(server.port, server.tlsCa!);
      try {
        assert.match(await again.request('version\r\n'), /^VERSION /);
      } finally {
        again.close();
      }
    } finally {
      await server.stop();
    }
  });

  test('memcached-server - bad args fail fast with stderr in the error', async () => {
    await assert.rejects(MemcachedServer.start({ args: ['--definitely-not-an-option'] }), (err: Error) => {
      assert.match(err.message, /memcached exited during startup/);
      assert.match(err.message, /stderr:/);
      return true;
    });
  });
});

// ---------------------------------------------------------------------------

describe('fake-server', () => {
  test('fake-server - replyWith answers line by line and records received bytes', async () => {
    const fake = await FakeServer.start(
      replyWith((line) => (line === 'version' ? 'VERSION fake\r\n' : line === 'mn' ? Buffer.from('MN\r\n') : null)),
    );
    try {
      assert.equal(fake.address, `127.0.0.1:${fake.port}`);
      const client = await LineClient.connect(fake.port);
      try {
        assert.equal(await client.request('version\r\n'), 'VERSION fake');
        // split across writes
        client.send('m');
        await fake.waitForReceived('version\r\nm');
        client.send('n\r\nignored\r\n');
        assert.equal(await client.line(), 'MN');
        await fake.waitForReceived('ignored\r\n');
        assert.equal(fake.received.toString(), 'version\r\nmn\r\nignored\r\n');
        assert.equal(fake.connections.length, 1);
      } finally {
        client.close();
      }
    } finally {
      await fake.close();
    }
  });

  test('fake-server - blackHole reads and never answers', async () => {
    const fake = await FakeServer.start(blackHole());
    try {
      const client = await LineClient.connect(fake.port);
      try {
        client.send('version\r\n');
        await assert.rejects(client.line(200), /no line within/);
        await fake.waitForReceived('version\r\n');
      } finally {
        client.close();
      }
    } finally {
      await fake.close();
    }
  });

  test('fake-server - close destroys open connections', async () => {
    const fake = await FakeServer.start((socket, server) => {
      socket.write(`HELLO ${server.connections.length}\r\n`);
    });
    const client = await LineClient.connect(fake.port);
    assert.equal(await client.line(), 'HELLO 1');
    await fake.close();
    await assert.rejects(client.line(2_000), /connection closed/);
  });
});

// ---------------------------------------------------------------------------

describe('tcp-proxy', () => {
  let server: MemcachedServer;
  const cleanups: (() => Promise<void>)[] = [];

  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  async function setup(): Promise<{ proxy: TcpProxy; client: LineClient }> {
    if (!server) {
      server = await MemcachedServer.start();
      cleanups.push(() => server.stop());
    }
    const proxy = await TcpProxy.start({ host: server.host, port: server.port });
    cleanups.push(() => proxy.close());
    const client = await LineClient.connect(proxy.port);
    cleanups.push(async () => client.close());
    return { proxy, client };
  }

  test('tcp-proxy - forwards traffic both ways', async () => {
    const { proxy, client } = await setup();
    assert.equal(proxy.address, `127.0.0.1:${proxy.port}`);
    const key = uniqueKey('proxy');
    assert.equal(await client.request(`ms ${key} 3\r\nabc\r\n`), 'HD');
    assert.equal(await client.request(`mg ${key} v\r\n`), 'VA 3');
    assert.equal(await client.line(), 'abc');
    assert.equal(proxy.activeConnections, 1);
  });

  test('tcp-proxy - setLatency delays each direction', async () => {
    const { proxy, client } = await setup();
    await client.request('mn\r\n'); // connection established upstream
    proxy.setLatency(100);
    const [reply, ms] = await timed(() => client.request('mn\r\n'));
    assert.equal(reply, 'MN');
    assert.ok(ms >= 190, `round trip took only ${ms} ms`);
    proxy.setLatency(0);
    const [, fast] = await timed(() => client.request('mn\r\n'));
    assert.ok(fast < 100, `round trip still slow: ${fast} ms`);
  });

  test('tcp-proxy - blackHole drops traffic but keeps the socket open', async () => {
    const { proxy, client } = await setup();
    assert.equal(await client.request('mn\r\n'), 'MN');
    proxy.blackHole(true);
    await assert.rejects(client.request('mn\r\n', 300), /no line within/);
    assert.equal(client.closed, false);
    proxy.blackHole(false);
    assert.equal(await client.request('mn\r\n'), 'MN');
  });

  test('tcp-proxy - blackHole hold mode delivers queued traffic when lifted', async () => {
    const { proxy, client } = await setup();
    assert.equal(await client.request('mn\r\n'), 'MN');
    proxy.blackHole(true, 'hold');
    await assert.rejects(client.request('version\r\n', 300), /no line within/);
    proxy.blackHole(false);
    assert.match(await client.line(), /^VERSION /);
  });

  test('tcp-proxy - cutAll destroys client and upstream sockets', async () => {
    const { proxy, client } = await setup();
    assert.equal(await client.request('mn\r\n'), 'MN');
    proxy.cutAll();
    await assert.rejects(client.line(2_000), /connection closed/);
    assert.equal(proxy.activeConnections, 0);
    // new connections still work
    const again = await LineClient.connect(proxy.port);
    try {
      assert.equal(await again.request('mn\r\n'), 'MN');
    } finally {
      again.close();
    }
  });

  test('tcp-proxy - cutAfterBytes toClient truncates a reply', async () => {
    const { proxy, client } = await setup();
    const key = uniqueKey('cut');
    assert.equal(await client.request(`ms ${key} 10\r\n0123456789\r\n`), 'HD');
    proxy.cutAfterBytes(6, 'toClient'); // "VA 10\r" then cut
    client.send(`mg ${key} v\r\n`);
    await assert.rejects(client.line(2_000), /connection closed/);
  });

  test('tcp-proxy - cutAfterBytes toServer cuts mid-request', async () => {
    const { proxy, client } = await setup();
    assert.equal(await client.request('mn\r\n'), 'MN');
    proxy.cutAfterBytes(3, 'toServer');
    client.send('version\r\n');
    await assert.rejects(client.line(2_000), /connection closed/);
  });

  test('tcp-proxy - throttle slows transfer and null lifts it', async () => {
    const { proxy, client } = await setup();
    const key = uniqueKey('throttle');
    const value = 'v'.repeat(2000);
    assert.equal(await client.request(`ms ${key} ${value.length}\r\n${value}\r\n`), 'HD');
    proxy.throttle(4000); // ~2 KB reply -> about half a second
    const [, ms] = await timed(async () => {
      assert.equal(await client.request(`mg ${key} v\r\n`, 5_000), `VA ${value.length}`);
      assert.equal(await client.line(5_000), value);
    });
    assert.ok(ms >= 350, `throttled transfer took only ${ms} ms`);
    proxy.throttle(null);
    const [, fast] = await timed(async () => {
      await client.request(`mg ${key} v\r\n`);
      await client.line();
    });
    assert.ok(fast < 200, `unthrottled transfer took ${fast} ms`);
  });

  test('tcp-proxy - refuse drops new connections until turned off', async () => {
    const { proxy } = await setup();
    proxy.refuse(true);
    const refused = await LineClient.connect(proxy.port);
    refused.send('mn\r\n');
    await assert.rejects(refused.line(2_000), /connection closed/);
    proxy.refuse(false);
    const ok = await LineClient.connect(proxy.port);
    try {
      assert.equal(await ok.request('mn\r\n'), 'MN');
    } finally {
      ok.close();
    }
  });

  test('tcp-proxy - upstream down closes the client connection', async () => {
    const dead = await MemcachedServer.start();
    const proxy = await TcpProxy.start({ host: dead.host, port: dead.port });
    try {
      await dead.stop();
      const client = await LineClient.connect(proxy.port);
      await assert.rejects(client.line(2_000), /connection closed/);
    } finally {
      await proxy.close();
    }
  });
});
