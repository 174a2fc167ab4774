/**
 * A child process for the multi-process tests, run as
 * `node --import tsx test/helpers/worker-locks.ts <mode>` with its settings in the environment:
 * `WORKER_SERVERS` (host:port), `WORKER_KEY`, `WORKER_PREFIX`, and per mode:
 *
 * - `loop`: prints `ready`, waits for `go` on stdin, then acquires `WORKER_KEY` until it has
 *   `WORKER_COUNT` acquisitions or `WORKER_DEADLINE_MS` has passed. Each acquisition is recorded
 *   as [start, end, fencingToken, pid, released] with wall stamps
 *   (`process.hrtime`, the machine's monotonic clock, comparable across processes), holding the
 *   lock 0-1 ms. Prints one JSON line `{ records, errors }` at the end.
 * - `pause`: acquires with a 1000 ms TTL and auto renewal, prints `acquired <fence>`, then waits
 *   for the handle's signal: prints `lost <reason>` when it aborts, then `released <bool>` (or
 *   `release-error <code>`) after releasing. The parent SIGSTOPs it in between.
 */
import { Locks, type LockLostError } from '../../src/index.js';

const mode = process.argv[2];
const servers = required('WORKER_SERVERS');
const key = required('WORKER_KEY');
const prefix = process.env.WORKER_PREFIX ?? 'mp:';

function required(name: string): string {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`worker: ${name} is not set\n`);
    process.exit(2);
  }
  return v;
}

/** CLOCK_MONOTONIC in ms: one clock for every process (performance.timeOrigin is per process, off by up to ms under load). */
const wall = (): number => Number(process.hrtime.bigint()) / 1e6;

function line(text: string): void {
  process.stdout.write(text + '\n');
}

function waitForGo(): Promise<void> {
  return new Promise((resolve) => {
    let buf = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.includes('go\n')) {
        // an open stdin would keep this process alive after its work
        process.stdin.destroy();
        resolve();
      }
    });
  });
}

async function loop(): Promise<void> {
  const count = Number(process.env.WORKER_COUNT ?? '500');
  const deadlineMs = Number(process.env.WORKER_DEADLINE_MS ?? '60000');
  const locks = new Locks({ servers, prefix });
  const mutex = locks.mutex(key);
  const records: [number, number, string, number, boolean][] = [];
  const errors: string[] = [];
  // connect before the start, so every worker starts contending at once
  await locks.inspect(key);
  line('ready');
  await waitForGo();
  const deadline = performance.now() + deadlineMs;
  while (records.length < count && performance.now() < deadline) {
    let h;
    try {
      h = await mutex.acquire({ ttlMs: 10_000, waitMs: Math.max(1, Math.floor(deadline - performance.now())) });
    } catch (err) {
      errors.push(`acquire: ${(err as Error).message}`);
      break;
    }
    const start = wall();
    // hold 0-1 ms, busy: the critical section is the interval [start, end]
    const holdUntil = performance.now() + Math.random();
    while (performance.now() < holdUntil) {
      // spin
    }
    const end = wall();
    let released = false;
    try {
      released = await h.release();
    } catch (err) {
      errors.push(`release: ${(err as Error).message}`);
    }
    records.push([start, end, h.fencingToken.toString(), process.pid, released]);
  }
  await locks.close();
  line(JSON.stringify({ records, errors }));
}

async function pause(): Promise<void> {
  const locks = new Locks({ servers, prefix });
  const h = await locks.mutex(key).acquire({ ttlMs: 1_000, autoRenew: true });
  const lost = new Promise<LockLostError>((resolve) => {
    h.signal.addEventListener('abort', () => resolve(h.signal.reason as LockLostError), { once: true });
  });
  line(`acquired ${h.fencingToken}`);
  const safety = setTimeout(() => {
    line('timeout');
    process.exit(1);
  }, 30_000);
  const error = await lost;
  line(`lost ${error.reason}`);
  try {
    line(`released ${await h.release()}`);
  } catch (err) {
    line(`release-error ${(err as { code?: string }).code ?? (err as Error).message}`);
  }
  clearTimeout(safety);
  await locks.close();
}

if (mode === 'loop') await loop();
else if (mode === 'pause') await pause();
else {
  process.stderr.write(`worker: unknown mode ${String(mode)}\n`);
  process.exit(2);
}
