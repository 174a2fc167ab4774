/**
 * Several processes against one real memcached: mutual exclusion and fencing order over
 * thousands of acquisitions of one key, and a holder paused past its TTL (SIGSTOP) that learns
 * on resume that it lost the lock. Workers: test/helpers/worker-locks.ts.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Locks } from '../../src/index.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { sleep, uniqueKey, within } from '../helpers/util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORKER = path.join(ROOT, 'test/helpers/worker-locks.ts');
const PREFIX = 'mp:';

let server: MemcachedServer;
const children = new Set<ChildProcess>();
const opened: Locks[] = [];

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((l) => l.close()));
  // a worker left over by a failed test: kill it by its own handle
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
  }
  children.clear();
});
after(async () => {
  await server.stop();
});

interface Worker {
  child: ChildProcess;
  /** The next stdout line (lines are queued until read). */
  nextLine(): Promise<string>;
  exited: Promise<number | null>;
  stderr(): string;
}

function startWorker(mode: 'loop' | 'pause', env: Record<string, string>): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, mode], {
    cwd: ROOT,
    env: { ...process.env, WORKER_SERVERS: server.address, WORKER_PREFIX: PREFIX, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (stderr += c));
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let closed = false;
  const rl = createInterface({ input: child.stdout! });
  rl.on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else lines.push(l);
  });
  rl.on('close', () => {
    closed = true;
    for (const w of waiters.splice(0)) w('<eof>');
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    nextLine: () => {
      const l = lines.shift();
      if (l !== undefined) return Promise.resolve(l);
      if (closed) return Promise.resolve('<eof>');
      return new Promise((resolve) => waiters.push(resolve));
    },
    exited,
    stderr: () => stderr,
  };
}

type WorkerRecord = [start: number, end: number, fence: string, pid: number, released: boolean];

describe('multiprocess', () => {
  test('multiprocess - 4 processes, 2000 acquisitions of one key: no overlap, fences increase in acquisition order', async (t) => {
    const N = 4;
    const PER_WORKER = 500;
    const key = uniqueKey('mp');
    const workers = Array.from({ length: N }, () =>
      startWorker('loop', { WORKER_KEY: key, WORKER_COUNT: String(PER_WORKER), WORKER_DEADLINE_MS: '60000' }),
    );
    for (const w of workers) {
      const ready = await within(w.nextLine(), 30_000, 'worker ready');
      assert.equal(ready, 'ready', w.stderr());
    }
    for (const w of workers) w.child.stdin!.write('go\n');

    const results = await within(
      Promise.all(
        workers.map(async (w) => {
          const out = await w.nextLine();
          const code = await w.exited;
          assert.equal(code, 0, `worker exited with ${code}: ${w.stderr()}`);
          return JSON.parse(out) as { records: WorkerRecord[]; errors: string[] };
        }),
      ),
      75_000,
      'all workers finishing',
    );

    const all: WorkerRecord[] = [];
    for (const r of results) {
      assert.deepEqual(r.errors, []);
      assert.equal(r.records.length, PER_WORKER, 'each worker finished its acquisitions before the deadline');
      all.push(...r.records);
    }
    assert.ok(all.length >= 2_000, `${all.length} acquisitions`);
    assert.equal(new Set(all.map((r) => r[3])).size, N, 'every process took part');
    assert.ok(
      all.every((r) => r[4] === true),
      'every release deleted its own lease',
    );

    all.sort((x, y) => x[0] - y[0]);
    let overlaps = 0;
    let disorders = 0;
    const examples: string[] = [];
    for (let i = 1; i < all.length; i++) {
      const prev = all[i - 1]!;
      const cur = all[i]!;
      if (cur[0] < prev[1]) {
        overlaps++;
        if (examples.length < 5) examples.push(`overlap: pid ${prev[3]} [${prev[0]}, ${prev[1]}] and pid ${cur[3]} starts ${cur[0]}`);
      }
      if (!(BigInt(cur[2]) > BigInt(prev[2]))) {
        disorders++;
        if (examples.length < 5) examples.push(`fence order: ${prev[2]} then ${cur[2]}`);
      }
    }
    let handovers = 0;
    for (let i = 1; i < all.length; i++) if (all[i]![3] !== all[i - 1]![3]) handovers++;
    t.diagnostic(`${all.length} acquisitions in ${Math.round(all[all.length - 1]![1] - all[0]![0])} ms, ${handovers} handovers between processes`);
    assert.equal(overlaps, 0, examples.join('\n'));
    assert.equal(disorders, 0, examples.join('\n'));
    assert.equal(await openLocks().inspect(key), null, 'nothing left locked');
  });

  test('multiprocess - a holder paused past its TTL (SIGSTOP) learns on resume that it lost the lock', async (t) => {
    const key = uniqueKey('sigstop');
    const worker = startWorker('pause', { WORKER_KEY: key });
    const acquired = await within(worker.nextLine(), 30_000, 'child acquired');
    assert.match(acquired, /^acquired \d+$/, worker.stderr());
    const childFence = BigInt(acquired.split(' ')[1]!);
    // let it renew a few times first (renewal every ~340 ms)
    await sleep(800);
    const parent = openLocks();
    assert.equal(await parent.mutex(key).tryAcquire(), null, 'renewal keeps the child holding');

    const pid = worker.child.pid!;
    process.kill(pid, 'SIGSTOP');
    const stoppedAt = Date.now();
    const mine = await parent.mutex(key).acquire({ waitMs: 10_000, ttlMs: 30_000 });
    assert.ok(mine.fencingToken > childFence);
    await sleep(Math.max(0, 3_000 - (Date.now() - stoppedAt)));
    process.kill(pid, 'SIGCONT');

    const lost = await within(worker.nextLine(), 10_000, 'child reporting the loss');
    assert.match(lost, /^lost (expired|taken|renewal-failed|disconnected)$/, worker.stderr());
    t.diagnostic(`child: ${lost}`);
    const released = await within(worker.nextLine(), 10_000, 'child releasing');
    assert.equal(released, 'released false', worker.stderr());
    assert.equal(await within(worker.exited, 10_000, 'child exit'), 0, worker.stderr());

    const info = await parent.inspect(key);
    assert.equal(info?.token, mine.lease?.token, "the parent's lock survived the child's release");
    assert.equal(await mine.release(), true);
  });
});

function openLocks(): Locks {
  const locks = new Locks({ servers: server.address, prefix: PREFIX });
  opened.push(locks);
  return locks;
}
