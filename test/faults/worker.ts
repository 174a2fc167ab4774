/**
 * A fault-suite worker: one process, one `Locks` factory, `concurrency` loops that acquire
 * random keys, hold them (renewing or not), write to the parent's guarded resource with their
 * fencing token, and release. Every acquisition, renewal, loss and release is recorded to
 * `recordFile` (JSON lines, ./recorder.ts) for the checker.
 *
 * Run by ./harness.ts as `node --import tsx test/faults/worker.ts` with an IPC channel and its
 * settings as JSON in `FAULT_WORKER_CONFIG`. Protocol: the worker sends `{ kind: 'ready' }`
 * once connected, starts on `{ kind: 'go' }`, stops on `{ kind: 'stop' }` or at its deadline,
 * and prints one line `{"summary": ...}` on stdout before exiting 0. Any error that is not a
 * MemcachedLockError, and any unhandled rejection, is reported in the summary or kills the
 * worker with exit code 4: both fail the scenario.
 */
import { Locks, LockLostError, MemcachedLockError, type LockHandle, type MemcachedStore } from '../../src/index.js';
import { ResourceClient } from './guarded-resource.js';
import { errorCode, FileRecorder, leaseDetail, recordRenewal, track, wallNow } from './recorder.js';
import { installClockJumps, mulberry32 } from './random.js';

export interface WorkerConfig {
  /** Process tag, unique in the run (`w1`...). */
  proc: string;
  servers: string;
  prefix: string;
  keys: string[];
  seed: number;
  /** The worker stops by itself after this long. */
  durationMs: number;
  /** Acquire loops running at once in this process. */
  concurrency: number;
  ttlMs: number;
  waitMs: number;
  /** Hold time range [min, max] in ms. */
  holdMs: [number, number];
  /** How holds are kept alive: none (short holds), manual `extend()`, automatic renewal, or a random mix. */
  renew: 'none' | 'manual' | 'auto' | 'mixed';
  /** Chance that a hold deliberately outlives its TTL without renewing (the library must signal the loss). */
  overrunChance: number;
  /** Writes to the guarded resource per hold. */
  writes: number;
  recordFile: string;
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  pushWakeups?: boolean;
  /** Stop after this many acquisitions. */
  maxAcquisitions?: number;
  /** Move `Date.now()` and `new Date()` by random hours, many times a second. */
  clockJumps?: boolean;
  /** Pause between a failed attempt (store error) and the next, in ms. @default 20 */
  errorPauseMs?: number;
}

export interface WorkerSummary {
  proc: string;
  pid: number;
  acquisitions: number;
  /** Acquisition failures by error code. */
  acquireErrors: Record<string, number>;
  extendErrors: Record<string, number>;
  releases: { deleted: number; notDeleted: number; failed: number };
  lost: Record<string, number>;
  writes: { accepted: number; rejected: number; unanswered: number };
  renewalErrors: number;
  warnings: string[];
  /** Errors that are not MemcachedLockErrors: each one fails the scenario. */
  unexpected: string[];
  /** Per acquisition: remainingMs right after acquiring (min/max), for the clock checks. */
  remainingAtAcquire: { min: number; max: number };
  /** Deliberate overruns: how late (ms, monotonic) the expiry loss came after the reported validity. */
  expiryLateness: { count: number; min: number; max: number };
  clockJumps: number;
  elapsedMs: number;
}

const cfg = JSON.parse(process.env.FAULT_WORKER_CONFIG ?? 'null') as WorkerConfig | null;
if (!cfg) {
  process.stderr.write('worker: FAULT_WORKER_CONFIG is not set\n');
  process.exit(2);
}

function die(what: string, err: unknown): void {
  process.stderr.write(`worker ${cfg?.proc}: ${what}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(4);
}
process.on('unhandledRejection', (err) => die('unhandled rejection', err));
process.on('uncaughtException', (err) => die('uncaught exception', err));

const random = mulberry32(cfg.seed);
const jumps = cfg.clockJumps ? installClockJumps(random) : null;
const rec = new FileRecorder(cfg.recordFile);
const resource = new ResourceClient();
const summary: WorkerSummary = {
  proc: cfg.proc,
  pid: process.pid,
  acquisitions: 0,
  acquireErrors: {},
  extendErrors: {},
  releases: { deleted: 0, notDeleted: 0, failed: 0 },
  lost: {},
  writes: { accepted: 0, rejected: 0, unanswered: 0 },
  renewalErrors: 0,
  warnings: [],
  unexpected: [],
  remainingAtAcquire: { min: Infinity, max: -Infinity },
  expiryLateness: { count: 0, min: Infinity, max: -Infinity },
  clockJumps: 0,
  elapsedMs: 0,
};

const locks = new Locks({
  servers: cfg.servers,
  prefix: cfg.prefix,
  requestTimeoutMs: cfg.requestTimeoutMs,
  connectTimeoutMs: cfg.connectTimeoutMs,
  reconnectMaxDelayMs: 200,
  pushWakeups: cfg.pushWakeups ?? true,
  maxTtlMs: Math.max(cfg.ttlMs, 1000),
});
locks.on('warning', (message: string) => summary.warnings.push(message));
locks.on('renewal-error', () => summary.renewalErrors++);
locks.on('lost', (_key: string, err: LockLostError) => {
  summary.lost[err.reason] = (summary.lost[err.reason] ?? 0) + 1;
});

let stopping = false;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const bump = (m: Record<string, number>, k: string): void => {
  m[k] = (m[k] ?? 0) + 1;
};

function unexpected(where: string, err: unknown): void {
  if (err instanceof MemcachedLockError) return;
  summary.unexpected.push(`${where}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
}

async function hold(h: LockHandle, holder: string, ms: number, renew: 'none' | 'manual' | 'auto', overrun: boolean): Promise<void> {
  const conn = (locks.store as MemcachedStore).client.connections[0]!;
  const server = `${conn.identity?.pid}/${conn.identity?.bootEpoch}/${conn.generation}/${leaseDetail(h) ?? ''}`;
  const tl = track(rec, h, { holder, proc: cfg!.proc, server });
  const acquiredAt = performance.now();
  const validFor = h.remainingMs;
  summary.remainingAtAcquire.min = Math.min(summary.remainingAtAcquire.min, validFor);
  summary.remainingAtAcquire.max = Math.max(summary.remainingAtAcquire.max, validFor);
  let lostAt = NaN;
  h.onLost(() => {
    lostAt = performance.now();
  });
  const end = performance.now() + ms;
  const writeEvery = cfg!.writes > 0 ? ms / cfg!.writes : Infinity;
  let nextWrite = performance.now();
  let nextRenew = performance.now() + cfg!.ttlMs / 3;
  try {
    while (performance.now() < end && h.state === 'held' && !stopping) {
      const now = performance.now();
      if (renew === 'manual' && now >= nextRenew) {
        nextRenew = now + cfg!.ttlMs / 3;
        try {
          await h.extend();
          recordRenewal(rec, tl);
        } catch (err) {
          unexpected('extend', err);
          bump(summary.extendErrors, errorCode(err));
          if (err instanceof LockLostError) break;
        }
        continue;
      }
      if (now >= nextWrite) {
        nextWrite = now + writeEvery;
        // write only while the lease is valid by the library's account; the fence guards the rest
        if (!h.isHeld) break;
        const accepted = await resource.write(h.key, holder, h.fencingToken);
        if (accepted === true) summary.writes.accepted++;
        else if (accepted === false) summary.writes.rejected++;
        else summary.writes.unanswered++;
        continue;
      }
      const wake = Math.min(end, nextWrite, renew === 'manual' ? nextRenew : Infinity);
      await sleep(Math.min(wake - now, 50));
    }
    if (overrun) {
      // wait for the library to notice that validity ran out (bounded: it must, soon)
      const deadline = performance.now() + cfg!.ttlMs + 3000;
      while (h.state === 'held' && performance.now() < deadline && !stopping) await sleep(10);
      if (!Number.isNaN(lostAt) && h.lostError?.reason === 'expired') {
        const late = lostAt - (acquiredAt + validFor);
        const e = summary.expiryLateness;
        e.count++;
        e.min = Math.min(e.min, late);
        e.max = Math.max(e.max, late);
      }
    }
  } finally {
    const deleted = await tl.release();
    if (deleted) summary.releases.deleted++;
    else if (h.state === 'released') summary.releases.notDeleted++;
  }
}

async function loop(id: number, deadline: number): Promise<void> {
  let n = 0;
  const mutexes = cfg!.keys.map((k) => locks.mutex(k));
  while (!stopping && performance.now() < deadline) {
    if (cfg!.maxAcquisitions !== undefined && summary.acquisitions >= cfg!.maxAcquisitions) break;
    const mutex = mutexes[Math.floor(random() * mutexes.length)]!;
    const mode = cfg!.renew === 'mixed' ? (['none', 'manual', 'auto'] as const)[Math.floor(random() * 3)]! : cfg!.renew;
    const overrun = random() < cfg!.overrunChance;
    const [lo, hi] = cfg!.holdMs;
    const holdFor = overrun ? cfg!.ttlMs * 1.2 : lo + random() * (hi - lo);
    let h: LockHandle;
    try {
      h = await mutex.acquire({
        ttlMs: cfg!.ttlMs,
        waitMs: Math.max(1, Math.min(cfg!.waitMs, Math.floor(deadline - performance.now()))),
        autoRenew: mode === 'auto' && !overrun,
      });
    } catch (err) {
      unexpected('acquire', err);
      bump(summary.acquireErrors, errorCode(err));
      if (!(err instanceof MemcachedLockError) || err.code !== 'ERR_LOCK_TIMEOUT') await sleep(cfg!.errorPauseMs ?? 20);
      continue;
    }
    summary.acquisitions++;
    n++;
    await hold(h, `${cfg!.proc}:${id}:${n}`, holdFor, overrun ? 'none' : mode, overrun);
  }
}

process.on('message', (msg: { kind?: string }) => {
  if (msg?.kind === 'go') void run();
  if (msg?.kind === 'stop') stopping = true;
});

let started = false;
async function run(): Promise<void> {
  if (started) return;
  started = true;
  const t0 = performance.now();
  const deadline = t0 + cfg!.durationMs;
  // a hang is a failure: report what we have and leave with a distinct code
  const watchdog = setTimeout(() => {
    summary.unexpected.push(`watchdog: worker still running ${cfg!.durationMs + 20_000} ms after start`);
    process.stdout.write(JSON.stringify({ summary }) + '\n');
    process.exit(3);
  }, cfg!.durationMs + 20_000);
  watchdog.unref();
  await Promise.all(Array.from({ length: cfg!.concurrency }, (_, i) => loop(i + 1, deadline)));
  await locks.close();
  rec.close();
  summary.elapsedMs = performance.now() - t0;
  summary.clockJumps = jumps?.count() ?? 0;
  process.stdout.write(JSON.stringify({ summary }, (_k, v: unknown) => (v === Infinity || v === -Infinity ? null : v)) + '\n');
  clearTimeout(watchdog);
  process.exit(0);
}

// connect first, so every worker starts contending at once
try {
  await locks.inspect(cfg.keys[0]!);
} catch (err) {
  unexpected('connect', err);
}
process.send?.({ kind: 'ready', t: wallNow() });
