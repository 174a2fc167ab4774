/**
 * Runs the real `memcached-lock` binary (`bin/memcached-lock.js`, which needs `npm run build`)
 * as a child process, for the CLI and demo tests.
 *
 * Every run is its own process group (`detached`), so a hang guard or `killAllCli()` can end
 * the CLI together with the command it runs, by process-group id only. A run that outlives its
 * guard is SIGKILLed and reported as timed out, never left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin', 'memcached-lock.js');
export const PACKAGE_VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;

/** Default hang guard for one CLI run: generous, never a performance assertion. */
export const CLI_GUARD_MS = 30_000;

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  /** Overrides on top of {@link cliEnv}; `undefined` removes a variable. */
  readonly env?: Record<string, string | undefined>;
  /** Hang guard: the process group is SIGKILLed after this long. */
  readonly timeoutMs?: number;
  /** Run this executable instead of the binary (`args` are then its own). */
  readonly command?: string;
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the first match of `pattern` in the stream; rejects if the process exits first. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** Resolves when the process exits; rejects if the hang guard had to kill it. */
  exit(): Promise<CliResult>;
}

const live = new Set<ChildProcess>();

/**
 * The environment of a CLI run: this process's, without anything that would change what the
 * CLI connects to or how it prints, plus `overrides`.
 */
export function cliEnv(overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^MEMCACHED_(SERVERS|LOCK_|TLS|USERNAME|PASSWORD)|^MEMCACHEDLOCK_|^NO_COLOR$/.test(k)) continue;
    env[k] = v;
  }
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Starts `memcached-lock <args>` and returns at once. */
export function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  const command = options.command ?? process.execPath;
  const argv = options.command ? [...args] : [BIN, ...args];
  const child = spawn(command, argv, {
    cwd: ROOT,
    env: cliEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  live.add(child);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  let timedOut = false;
  const guardMs = options.timeoutMs ?? CLI_GUARD_MS;
  const guard = setTimeout(() => {
    timedOut = true;
    killGroup(child);
  }, guardMs);
  // 'close' (not 'exit'): both pipes are drained by then
  const done = new Promise<CliResult>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(guard);
      live.delete(child);
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  const describe = (): string => `memcached-lock ${args.join(' ')}\n--- stdout\n${out}\n--- stderr\n${err}`;
  return {
    child,
    pid: child.pid as number,
    stdout: () => out,
    stderr: () => err,
    waitFor(stream, pattern, ms = CLI_GUARD_MS) {
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        const source = stream === 'stdout' ? child.stdout : child.stderr;
        const text = (): string => (stream === 'stdout' ? out : err);
        const cleanup = (): void => {
          clearTimeout(timer);
          source.off('data', check);
          child.off('close', closed);
        };
        const check = (): void => {
          const m = pattern.exec(text());
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const closed = (): void => {
          cleanup();
          reject(new Error(`exited before ${stream} matched ${pattern}: ${describe()}`));
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${stream} did not match ${pattern} within ${ms} ms: ${describe()}`));
        }, ms);
        // after the stream's own listener, so `text()` already holds the chunk
        source.on('data', check);
        child.once('close', closed);
        check();
      });
    },
    async exit() {
      const result = await done;
      if (timedOut) throw new Error(`still running after ${guardMs} ms, killed: ${describe()}`);
      return result;
    },
  };
}

/** Runs `memcached-lock <args>` to completion. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return startCli(args, options).exit();
}

/** SIGKILLs every CLI run still alive, with what it runs (for an `afterEach` after a failed test). */
export function killAllCli(): void {
  for (const child of live) killGroup(child);
}

/** The whole group: the command under `run` inherits the pipes and may outlive the CLI. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || !live.has(child)) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** A loopback TCP port nothing listens on. */
export async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

// eslint-disable-next-line no-control-regex
export const ANSI = /\x1b\[/;
