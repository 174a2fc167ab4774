/**
 * Recording lock histories for the safety checker (./checker.ts), in-process or from child
 * workers. Every event carries a stamp `t` in ms from `process.hrtime` (CLOCK_MONOTONIC): one
 * clock for every process on the host (`performance.timeOrigin` is taken per process at start
 * and differs between processes by up to milliseconds under load), and, unlike `Date.now()`,
 * untouched by a test that moves the wall clock.
 *
 * Events are plain JSON (fences as decimal strings), so a worker can append them to a file, one
 * JSON line each, with a synchronous write: nothing is lost when the worker is SIGKILLed.
 */
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';

import type { LockHandle } from '../../src/index.js';

/** Monotonic ms, comparable across processes on one host (`process.hrtime`). */
export function wallNow(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** A lease was granted: `holder` names this one lease (unique in the history). */
export interface AcquireEvent {
  type: 'acquire';
  key: string;
  holder: string;
  /** Process tag of the holder (a crash event names it). */
  proc: string;
  fence: string;
  /** When the caller got the handle. */
  t: number;
  /** `t + handle.remainingMs` at that moment: the end of validity by the library's own account. */
  validUntil: number;
  /** Optional diagnostics: which server process granted it (e.g. `pid/epoch/generation`). */
  server?: string;
}

/** The lease was extended: valid until `validUntil` as of `t`. */
export interface RenewEvent {
  type: 'renew';
  key: string;
  holder: string;
  t: number;
  validUntil: number;
  /** Optional diagnostics (e.g. the lease's new CAS). */
  detail?: string;
}

/** The holder ended its critical section at `t` and called release (result in `deleted`, or `error`). */
export interface ReleaseEvent {
  type: 'release';
  key: string;
  holder: string;
  t: number;
  deleted: boolean;
  /** Error code when `release()` rejected. */
  error?: string;
}

/** The library signalled the lease lost (handle signal / onLost) at `t`. */
export interface LostEvent {
  type: 'lost';
  key: string;
  holder: string;
  t: number;
  reason: string;
}

/** The guarded resource answered a write with fence `fence` (see ./guarded-resource.ts). */
export interface WriteEvent {
  type: 'write';
  key: string;
  holder: string;
  fence: string;
  t: number;
  accepted: boolean;
  /** The resource's own order of writes. */
  seq: number;
}

/** A process was killed (SIGKILL) at `t`: its open leases end there and need no loss signal. */
export interface CrashEvent {
  type: 'crash';
  proc: string;
  t: number;
}

export type HistoryEvent = AcquireEvent | RenewEvent | ReleaseEvent | LostEvent | WriteEvent | CrashEvent;

export interface Recorder {
  record(event: HistoryEvent): void;
}

/** Keeps events in an array (for in-process scenarios and the parent's own events). */
export class MemoryRecorder implements Recorder {
  readonly events: HistoryEvent[] = [];
  record(event: HistoryEvent): void {
    this.events.push(event);
  }
}

/** Appends one JSON line per event to `file`, synchronously (survives SIGKILL of the writer). */
export class FileRecorder implements Recorder {
  #fd: number | null;
  constructor(readonly file: string) {
    this.#fd = openSync(file, 'a');
  }
  record(event: HistoryEvent): void {
    if (this.#fd === null) return;
    writeSync(this.#fd, JSON.stringify(event) + '\n');
  }
  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }
}

/** Reads a history file; a torn last line (the writer was killed mid-write) is ignored. */
export function readHistoryFile(file: string): HistoryEvent[] {
  if (!existsSync(file)) return [];
  const out: HistoryEvent[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    try {
      out.push(JSON.parse(line) as HistoryEvent);
    } catch (err) {
      if (i < lines.length - 1) throw new Error(`${file}:${i + 1}: bad history line: ${line.slice(0, 200)}`, { cause: err });
    }
  }
  return out;
}

/** What {@link track} returns: the recorded way to end the lease. */
export interface TrackedLease {
  readonly holder: string;
  readonly handle: LockHandle;
  /** Records the end of the critical section, then releases and records the outcome. Never rejects. */
  release(): Promise<boolean>;
  /** Stops watching (called by release; call it yourself if you drop the handle otherwise). */
  stop(): void;
}

/**
 * Records an acquisition and watches the handle: its loss (handle.onLost) and, every
 * `pollMs`, whether auto-renewal replaced its lease (a renewal: the new validity). Call
 * {@link TrackedLease.release} instead of `handle.release()`.
 */
export function track(
  rec: Recorder,
  handle: LockHandle,
  ids: { holder: string; proc: string; server?: string },
  options: { pollMs?: number } = {},
): TrackedLease {
  const t = wallNow();
  const { holder, proc, server } = ids;
  const key = handle.key;
  const event: AcquireEvent = { type: 'acquire', key, holder, proc, fence: handle.fencingToken.toString(), t, validUntil: t + handle.remainingMs };
  if (server !== undefined) event.server = server;
  rec.record(event);
  let lease = handle.lease;
  const notice = (): void => {
    if (handle.lease !== lease && handle.state === 'held') {
      lease = handle.lease;
      const now = wallNow();
      rec.record({ type: 'renew', key, holder, t: now, validUntil: now + handle.remainingMs, detail: leaseDetail(handle) });
    }
  };
  const poll = setInterval(notice, options.pollMs ?? 5);
  poll.unref();
  const unlisten = handle.onLost((err) => {
    rec.record({ type: 'lost', key, holder, t: wallNow(), reason: err.reason });
  });
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    clearInterval(poll);
  };
  return {
    holder,
    handle,
    stop,
    async release() {
      notice();
      stop();
      const tEnd = wallNow();
      try {
        const deleted = await handle.release();
        unlisten();
        rec.record({ type: 'release', key, holder, t: tEnd, deleted });
        return deleted;
      } catch (err) {
        unlisten();
        rec.record({ type: 'release', key, holder, t: tEnd, deleted: false, error: errorCode(err) });
        return false;
      }
    },
  };
}

/** Records a manual `extend()` that succeeded (call right after it resolves). */
export function recordRenewal(rec: Recorder, lease: TrackedLease): void {
  const now = wallNow();
  rec.record({
    type: 'renew',
    key: lease.handle.key,
    holder: lease.holder,
    t: now,
    validUntil: now + lease.handle.remainingMs,
    detail: leaseDetail(lease.handle),
  });
}

/** Diagnostics only: the memcached lease's CAS and connection generation, when there is one. */
export function leaseDetail(handle: LockHandle): string | undefined {
  const st = (handle.lease as { state?: { cas?: string; generation?: number } } | null)?.state;
  return st ? `cas ${st.cas} gen ${st.generation}` : undefined;
}

/** `err.code` when it has one, else its name. */
export function errorCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return err instanceof Error ? err.name : typeof err;
}
