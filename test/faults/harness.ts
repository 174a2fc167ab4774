/**
 * Runs one fault scenario: starts worker processes (./worker.ts), optionally each behind its
 * own TcpProxy, serves them the guarded resource, lets the test inject faults, then stops the
 * workers, gathers the history and runs the safety checker.
 *
 * Seeds: every run has one seed that drives the workers' choices and the fault schedule. It is
 * printed with a replay command; `FAULT_SEED=<seed>` replays exactly that run (timing aside),
 * `FAULT_RUNS=<n>` changes how many seeded runs each scenario makes.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { MemcachedServer } from '../helpers/memcached-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { checkHistory, summarize, type CheckName, type CheckResult } from './checker.js';
import { GuardedResource, serveResource } from './guarded-resource.js';
import { deriveSeed, mulberry32 } from './random.js';
import { MemoryRecorder, readHistoryFile, wallNow, type HistoryEvent } from './recorder.js';
import type { WorkerConfig, WorkerSummary } from './worker.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
const WORKER = path.join(HERE, 'worker.ts');

/**
 * The seeds of a scenario's runs: `FAULT_SEED` alone when set (a replay), else `runs` fresh
 * random seeds (`FAULT_RUNS` overrides `runs`).
 */
export function scenarioSeeds(runs: number): number[] {
  const fixed = process.env.FAULT_SEED;
  if (fixed) return [Number(fixed)];
  const n = process.env.FAULT_RUNS ? Number(process.env.FAULT_RUNS) : runs;
  return Array.from({ length: n }, () => randomInt(1, 2 ** 31 - 1));
}

export interface RunOptions {
  scenario: string;
  /** The test file, for the replay command. */
  file: string;
  seed: number;
  server: MemcachedServer;
  workers: number;
  /** Put each worker behind its own TcpProxy (`run.proxies[i]`). @default false */
  proxied?: boolean;
  /** Settings of every worker (over the defaults below). */
  worker?: Partial<WorkerConfig>;
  /** Per-worker settings, over `worker`. */
  perWorker?: (index: number) => Partial<WorkerConfig>;
  /** Keys shared by the workers. @default 3 */
  keys?: number;
  /** Resource that accepts any write (checker tests only). @default false */
  naiveResource?: boolean;
}

export interface Fault {
  t: number;
  what: string;
}

export interface RunOutcome {
  scenario: string;
  seed: number;
  result: CheckResult;
  summaries: WorkerSummary[];
  faults: Fault[];
  history: HistoryEvent[];
  /** Exit codes of the workers (null: killed by a signal, by the scenario). */
  exitCodes: (number | null)[];
  /** Problems of the workers themselves: unexpected errors, hangs, bad exits. */
  workerProblems: string[];
  durationMs: number;
}

export class WorkerProc {
  readonly child: ChildProcess;
  readonly proc: string;
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  summary: WorkerSummary | null = null;
  #stdout = '';
  #stderr = '';
  #paused = false;
  killed = false;

  constructor(
    readonly config: WorkerConfig,
    readonly run: FaultRun,
  ) {
    this.proc = config.proc;
    this.child = spawn(process.execPath, ['--import', 'tsx', WORKER], {
      cwd: ROOT,
      env: { ...process.env, FAULT_WORKER_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.child.stdout!.setEncoding('utf8');
    this.child.stderr!.setEncoding('utf8');
    this.child.stdout!.on('data', (c: string) => (this.#stdout += c));
    this.child.stderr!.on('data', (c: string) => (this.#stderr += c));
    this.ready = new Promise((resolve, reject) => {
      this.child.on('message', (m: { kind?: string }) => {
        if (m?.kind === 'ready') resolve();
      });
      this.child.once('exit', (code, signal) => reject(new Error(`worker ${this.proc} exited before ready (${code ?? signal}): ${this.#stderr}`)));
    });
    this.ready.catch(() => {});
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        for (const line of this.#stdout.split('\n')) {
          if (line.startsWith('{"summary"')) this.summary = (JSON.parse(line) as { summary: WorkerSummary }).summary;
        }
        resolve(code);
      });
    });
    serveResource(this.child, run.resource);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get stderr(): string {
    return this.#stderr;
  }

  send(kind: 'go' | 'stop'): void {
    if (this.child.connected) this.child.send({ kind }, () => {});
  }

  /** Leases this worker holds right now, from its record file (written synchronously). */
  openLeases(): string[] {
    const open = new Set<string>();
    for (const e of readHistoryFile(this.config.recordFile)) {
      if (e.type === 'acquire') open.add(e.holder);
      else if (e.type === 'release' || e.type === 'lost') open.delete(e.holder);
    }
    return [...open];
  }

  /** Waits (up to `ms`) until this worker holds a lease. True when it does. */
  async holding(ms = 5_000): Promise<boolean> {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      if (this.openLeases().length > 0) return true;
      await sleep(10);
    }
    return false;
  }

  /** SIGSTOP: the process keeps its sockets and timers but runs nothing. */
  pause(): void {
    if (!this.alive) return;
    this.child.kill('SIGSTOP');
    this.#paused = true;
  }

  resume(): void {
    if (!this.alive || !this.#paused) return;
    this.child.kill('SIGCONT');
    this.#paused = false;
  }

  /** SIGKILL, recorded as a crash: the process's open leases end now, unsignalled, by design. */
  kill(): void {
    if (!this.alive) return;
    this.child.kill('SIGKILL');
    this.killed = true;
    this.run.recorder.record({ type: 'crash', proc: this.proc, t: wallNow() });
  }

  /** Last resort in cleanup (by this child's own handle only). */
  forceKill(): void {
    if (!this.alive) return;
    if (this.#paused) this.child.kill('SIGCONT');
    this.child.kill('SIGKILL');
  }
}

export class FaultRun {
  readonly recorder = new MemoryRecorder();
  readonly resource: GuardedResource;
  readonly workers: WorkerProc[] = [];
  readonly proxies: TcpProxy[] = [];
  readonly faults: Fault[] = [];
  readonly random: () => number;
  readonly dir: string;
  readonly #started = performance.now();
  #finished = false;

  private constructor(readonly options: RunOptions) {
    this.random = mulberry32(deriveSeed(options.seed, 0));
    this.dir = mkdtempSync(path.join(os.tmpdir(), `memcached-lock-faults-${options.scenario}-`));
    this.resource = new GuardedResource(this.recorder, { checkFences: !options.naiveResource });
  }

  /** Starts the workers (each behind a proxy when `proxied`) and waits until all are connected. */
  static async start(options: RunOptions): Promise<FaultRun> {
    const run = new FaultRun(options);
    try {
      const keys = Array.from({ length: options.keys ?? 3 }, (_, i) => `k${i}`);
      for (let i = 0; i < options.workers; i++) {
        let servers = options.server.address;
        if (options.proxied) {
          const proxy = await TcpProxy.start({ host: options.server.host, port: options.server.port });
          run.proxies.push(proxy);
          servers = proxy.address;
        }
        const config: WorkerConfig = {
          proc: `w${i + 1}`,
          servers,
          prefix: `f-${options.scenario}-${options.seed}:`,
          keys,
          seed: deriveSeed(options.seed, i + 1),
          durationMs: 6_000,
          concurrency: 2,
          ttlMs: 1_000,
          waitMs: 2_000,
          holdMs: [5, 400],
          renew: 'mixed',
          overrunChance: 0.03,
          writes: 2,
          recordFile: path.join(run.dir, `w${i + 1}.jsonl`),
          requestTimeoutMs: 500,
          connectTimeoutMs: 500,
          ...options.worker,
          ...options.perWorker?.(i),
        };
        run.workers.push(new WorkerProc(config, run));
      }
      await withTimeout(Promise.all(run.workers.map((w) => w.ready)), 30_000, 'workers ready');
    } catch (err) {
      await run.cleanup();
      throw err;
    }
    return run;
  }

  /** Records a fault and prints it. */
  fault(what: string): void {
    const t = wallNow();
    this.faults.push({ t, what });
    console.log(`[faults] ${this.options.scenario} seed=${this.options.seed} +${Math.round(performance.now() - this.#started)} ms: ${what}`);
  }

  go(): void {
    for (const w of this.workers) w.send('go');
  }

  /** A random integer in [lo, hi] from the run's seeded schedule. */
  between(lo: number, hi: number): number {
    return Math.floor(lo + this.random() * (hi - lo + 1));
  }

  /** Waits for every worker to finish (they stop by themselves at their deadline), then checks the history. */
  async finish(options: { stopAfterMs?: number; timeoutMs?: number; expect?: CheckName[]; expectEarlyLoss?: boolean } = {}): Promise<RunOutcome> {
    if (options.stopAfterMs !== undefined) {
      await sleep(options.stopAfterMs);
      for (const w of this.workers) w.send('stop');
    }
    const exitCodes = await withTimeout(
      Promise.all(this.workers.map((w) => w.exited)),
      options.timeoutMs ?? 60_000,
      'workers finishing',
    ).catch((err: Error) => {
      for (const w of this.workers) w.forceKill();
      throw new Error(`${err.message}: a worker hung (seed ${this.options.seed}); stderr: ${this.workers.map((w) => w.stderr).join('\n')}`);
    });
    this.#finished = true;
    const history: HistoryEvent[] = [...this.recorder.events];
    for (const w of this.workers) history.push(...readHistoryFile(w.config.recordFile));
    const result = checkHistory(history);
    const summaries = this.workers.map((w) => w.summary).filter((s): s is WorkerSummary => s !== null);
    const workerProblems: string[] = [];
    this.workers.forEach((w, i) => {
      const code = exitCodes[i];
      if (w.killed) return;
      if (code !== 0) workerProblems.push(`worker ${w.proc} exited with ${code}: ${w.stderr.slice(-2000)}`);
      if (!w.summary) workerProblems.push(`worker ${w.proc} printed no summary`);
      for (const u of w.summary?.unexpected ?? []) workerProblems.push(`worker ${w.proc}: ${u}`);
    });
    const outcome: RunOutcome = {
      scenario: this.options.scenario,
      seed: this.options.seed,
      result,
      summaries,
      faults: this.faults,
      history,
      exitCodes,
      workerProblems,
      durationMs: performance.now() - this.#started,
    };
    report(outcome, this.options.file);
    // records are kept for a look when something unexpected happened: a violation (other than
    // those of a documented failure mode, `expect`), a worker problem, or a lease found gone while
    // still valid (not a violation by itself, but the symptom of a lock lost early)
    const clean =
      result.violations.every((v) => options.expect?.includes(v.check)) &&
      workerProblems.length === 0 &&
      (result.stats.takenWhileValid === 0 || options.expectEarlyLoss === true);
    if (!clean || process.env.FAULT_KEEP) {
      writeFileSync(path.join(this.dir, 'parent.jsonl'), this.recorder.events.map((e) => JSON.stringify(e) + '\n').join(''));
      writeFileSync(path.join(this.dir, 'faults.json'), JSON.stringify({ seed: this.options.seed, faults: this.faults }, null, 1));
      writeFileSync(path.join(this.dir, 'violations.json'), JSON.stringify(result.violations, null, 1));
    }
    // FAULT_KEEP=1 keeps every run's records (for digging into a run that passed)
    await this.cleanup(clean && !process.env.FAULT_KEEP);
    return outcome;
  }

  /** Stops everything this run started (children by their handle, proxies); keeps the records of a failed run. */
  async cleanup(removeRecords = true): Promise<void> {
    for (const w of this.workers) w.forceKill();
    await Promise.all(this.workers.map((w) => w.exited));
    await Promise.all(this.proxies.map((p) => p.close()));
    if (removeRecords) rmSync(this.dir, { recursive: true, force: true });
    else if (this.#finished) console.log(`[faults] records kept in ${this.dir}`);
  }
}

function report(o: RunOutcome, file: string): void {
  const sum = (f: (s: WorkerSummary) => number): number => o.summaries.reduce((a, s) => a + f(s), 0);
  console.log(
    `[faults] ${o.scenario} seed=${o.seed}: ${o.faults.length} fault(s) injected, ${sum((s) => s.acquisitions)} acquisitions; ` +
      `${summarize(o.result)}; ${Math.round(o.durationMs)} ms` +
      `\n[faults]   replay: FAULT_SEED=${o.seed} node scripts/test.mjs ${file}`,
  );
  for (const v of o.result.violations.slice(0, 10)) console.log(`[faults]   VIOLATION ${v.check} ${v.key}: ${v.message}`);
  const out = process.env.FAULT_REPORT;
  if (out) {
    appendFileSync(
      out,
      JSON.stringify({
        scenario: o.scenario,
        seed: o.seed,
        faults: o.faults.map((f) => f.what),
        acquisitions: sum((s) => s.acquisitions),
        stats: o.result.stats,
        violations: o.result.counts,
        examples: o.result.violations.slice(0, 3).map((v) => `${v.check}: ${v.message}`),
        workerProblems: o.workerProblems.length,
        warnings: sum((s) => s.warnings.length),
        durationMs: Math.round(o.durationMs),
      }) + '\n',
    );
  }
}

/** Asserts that a run found no violation (besides `allow`) and that no worker misbehaved. */
export function assertSafe(o: RunOutcome, options: { allow?: CheckName[] } = {}): void {
  assert.deepEqual(o.workerProblems, [], `worker problems (seed ${o.seed})`);
  const bad = o.result.violations.filter((v) => !options.allow?.includes(v.check));
  assert.equal(
    bad.length,
    0,
    `seed ${o.seed}: ${bad.length} violation(s):\n${bad
      .slice(0, 10)
      .map((v) => `  ${v.check} ${v.key}: ${v.message}`)
      .join('\n')}`,
  );
}

export function total(o: RunOutcome, f: (s: WorkerSummary) => number): number {
  return o.summaries.reduce((a, s) => a + f(s), 0);
}

/** Leases lost for any of `reasons`, over all workers. */
export function lostFor(o: RunOutcome, ...reasons: string[]): number {
  return reasons.reduce((a, r) => a + (o.result.stats.lostByReason[r] ?? 0), 0);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
