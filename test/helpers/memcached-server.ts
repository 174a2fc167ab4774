/**
 * Launcher for real memcached processes, for tests.
 *
 * Every server listens on 127.0.0.1 on a free port, TCP only (`-U 0`). Servers
 * are tracked in a module-level set and SIGKILLed (by PID only) when the test
 * process exits, so a test that forgets to stop one does not leak it. The child
 * process handle is unref'ed, so a forgotten server never keeps a test file's
 * event loop alive either.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, rmSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface MemcachedServerOptions {
  /** Extra command-line arguments, appended after the launcher's own. */
  args?: string[];
  /** Memory limit in megabytes (`-m`). */
  memoryMb?: number;
  /** Serve TLS only (`-Z`) with a freshly generated self-signed certificate. */
  tls?: boolean;
  /** Require ASCII-protocol authentication (`-Y authfile`). */
  auth?: { username: string; password: string };
}

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 5_000;
const STOP_GRACE_MS = 2_000;
const MAX_PORT_ATTEMPTS = 8;

// ---------------------------------------------------------------------------
// Environment discovery
// ---------------------------------------------------------------------------

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** The memcached binary: `$MEMCACHED_BIN`, else `memcached` on PATH. Throws if neither exists. */
export function memcachedBinary(): string {
  const fromEnv = process.env.MEMCACHED_BIN;
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new Error(`MEMCACHED_BIN=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const found = findOnPath('memcached');
  if (!found) {
    throw new Error(
      'memcached not found: install memcached >= 1.6 (apt-get install memcached, brew install memcached) or set MEMCACHED_BIN',
    );
  }
  return found;
}

let runAsUserCache: string | null | undefined;

/** memcached refuses to run as root without `-u`; pick `memcache`, else `nobody`. */
function runAsUser(): string | null {
  if (runAsUserCache !== undefined) return runAsUserCache;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    runAsUserCache = null;
    return null;
  }
  try {
    execFileSync('id', ['-u', 'memcache'], { stdio: 'ignore' });
    runAsUserCache = 'memcache';
  } catch {
    runAsUserCache = 'nobody';
  }
  return runAsUserCache;
}

let tlsSupportCache: Promise<boolean> | undefined;

/**
 * True when the memcached binary was built with TLS (`-Z`) and `openssl` is
 * available to generate a test certificate. Tests use it to skip TLS cases.
 */
export function memcachedSupportsTls(): Promise<boolean> {
  tlsSupportCache ??= (async () => {
    if (!findOnPath('openssl')) return false;
    let help: string;
    try {
      // `memcached -h` exits 0 and prints usage to stdout.
      const { stdout } = await execFileAsync(memcachedBinary(), ['-h'], { maxBuffer: 4 * 1024 * 1024 });
      help = stdout;
    } catch (err) {
      const e = err as { stdout?: string };
      help = e.stdout ?? '';
    }
    return /--enable-ssl/.test(help);
  })();
  return tlsSupportCache;
}

// ---------------------------------------------------------------------------
// Process tracking and cleanup on exit
// ---------------------------------------------------------------------------

const running = new Set<MemcachedServer>();
let exitHooksInstalled = false;

function killAllSync(): void {
  for (const server of running) server.killSync();
  running.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', killAllSync);
  // 'exit' does not run when the process dies of a signal (e.g. the test
  // runner terminating a file). Clean up, then keep the default behaviour when
  // nobody else handles the signal.
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllSync();
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not allocate a free port'))));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (!isAlive(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Linux: read the scheduler state letter of every thread of `pid`. null when /proc is unavailable. */
async function threadStates(pid: number): Promise<string[] | null> {
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  const states: string[] = [];
  for (const tid of tids) {
    try {
      const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // "tid (comm) S ..." - comm may contain spaces, so split after the last ')'.
      states.push(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
    } catch {
      // thread exited meanwhile
    }
  }
  return states;
}

/** Wait (up to 1 s) until all threads are stopped (`T`) or none is. */
async function waitForThreadState(pid: number, stopped: boolean): Promise<void> {
  const deadline = Date.now() + 1_000;
  while (Date.now() < deadline) {
    const states = await threadStates(pid);
    if (states === null) {
      await sleep(20); // no /proc: give the signal a moment
      return;
    }
    const done = stopped ? states.every((s) => s === 'T' || s === 't') : states.every((s) => s !== 'T');
    if (done) return;
    await sleep(2);
  }
}

/** Open one connection, optionally authenticate, send `version`, resolve on a `VERSION ` line. */
function probeVersion(
  port: number,
  opts: { ca?: string; auth?: { username: string; password: string }; timeoutMs: number },
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let settled = false;
    const socket: net.Socket = opts.ca
      ? tls.connect({ host: HOST, port, ca: opts.ca })
      : net.connect({ host: HOST, port });
    const finish = (err: Error | null, version?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(version ?? '');
    };
    const timer = setTimeout(() => finish(new Error('probe timed out')), opts.timeoutMs);
    socket.setEncoding('utf8');
    socket.once(opts.ca ? 'secureConnect' : 'connect', () => {
      let payload = '';
      if (opts.auth) {
        const token = `${opts.auth.username} ${opts.auth.password}`;
        payload += `set auth 0 0 ${Buffer.byteLength(token)}\r\n${token}\r\n`;
      }
      payload += 'version\r\n';
      socket.write(payload);
    });
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let idx: number;
      while ((idx = buf.indexOf('\r\n')) !== -1) {
        const line = buf.slice(0, idx);
        buf = buf.slice(idx + 2);
        if (line.startsWith('VERSION ')) return finish(null, line.slice('VERSION '.length));
        if (line.startsWith('CLIENT_ERROR') || line.startsWith('SERVER_ERROR') || line === 'ERROR') {
          return finish(new Error(`server answered: ${line}`));
        }
      }
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error('connection closed before VERSION')));
  });
}

// ---------------------------------------------------------------------------
// MemcachedServer
// ---------------------------------------------------------------------------

export class MemcachedServer {
  readonly host = HOST;
  /** PEM of the self-signed certificate (its own CA) when started with `tls: true`. */
  readonly tlsCa?: string;
  readonly auth?: { username: string; password: string };

  #port: number;
  #child: ChildProcess;
  #stderr = '';
  #paused = false;
  #stopped = false;
  readonly #bin: string;
  readonly #extraArgs: string[];
  readonly #tempDir?: string;

  private constructor(init: {
    bin: string;
    port: number;
    child: ChildProcess;
    stderr: () => string;
    extraArgs: string[];
    tempDir?: string;
    tlsCa?: string;
    auth?: { username: string; password: string };
  }) {
    this.#bin = init.bin;
    this.#port = init.port;
    this.#child = init.child;
    this.#extraArgs = init.extraArgs;
    this.#tempDir = init.tempDir;
    this.tlsCa = init.tlsCa;
    this.auth = init.auth;
    this.#attachStderr(init.child, init.stderr());
  }

  get port(): number {
    return this.#port;
  }

  /** `"127.0.0.1:PORT"` */
  get address(): string {
    return `${HOST}:${this.#port}`;
  }

  /** PID of the current memcached process (changes after `restart()`). */
  get pid(): number {
    return this.#child.pid ?? -1;
  }

  /** True while the memcached process is alive (paused counts as alive). */
  get running(): boolean {
    return isAlive(this.#child);
  }

  /** Everything the current process wrote to stderr. */
  get stderr(): string {
    return this.#stderr;
  }

  static async start(opts: MemcachedServerOptions = {}): Promise<MemcachedServer> {
    const bin = memcachedBinary();
    installExitHooks();

    const extraArgs: string[] = [];
    let tempDir: string | undefined;
    let tlsCa: string | undefined;
    try {
      if (opts.memoryMb !== undefined) extraArgs.push('-m', String(opts.memoryMb));
      if (opts.tls || opts.auth) {
        tempDir = await mkdtemp(path.join(os.tmpdir(), 'memcached-lock-test-'));
        // memcached may drop privileges (-u) before reading these files.
        await chmod(tempDir, 0o755);
      }
      if (opts.tls) {
        if (!(await memcachedSupportsTls())) throw new Error('memcached was built without TLS');
        const dir = tempDir as string;
        const certFile = path.join(dir, 'cert.pem');
        const keyFile = path.join(dir, 'key.pem');
        try {
          await execFileAsync('openssl', [
            'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
            '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
            '-keyout', keyFile, '-out', certFile,
          ]);
        } catch (err) {
          const e = err as { stderr?: string; message?: string };
          throw new Error(`openssl failed to create a test certificate: ${e.stderr || e.message}`);
        }
        await chmod(certFile, 0o644);
        await chmod(keyFile, 0o644);
        tlsCa = await readFile(certFile, 'utf8');
        extraArgs.push('-Z', '-o', `ssl_chain_cert=${certFile},ssl_key=${keyFile}`);
      }
      if (opts.auth) {
        const authFile = path.join(tempDir as string, 'auth');
        await writeFile(authFile, `${opts.auth.username}:${opts.auth.password}\n`, { mode: 0o644 });
        await chmod(authFile, 0o644);
        extraArgs.push('-Y', authFile);
      }
      extraArgs.push(...(opts.args ?? []));

      let lastError: unknown;
      for (let attempt = 0; attempt < MAX_PORT_ATTEMPTS; attempt++) {
        const port = await freePort();
        const launched = await launch(bin, port, extraArgs, { ca: tlsCa, auth: opts.auth });
        if ('child' in launched) {
          const server = new MemcachedServer({
            bin, port, child: launched.child, stderr: launched.stderr, extraArgs, tempDir, tlsCa, auth: opts.auth,
          });
          running.add(server);
          return server;
        }
        lastError = launched.error;
        if (!launched.portInUse) break;
      }
      throw lastError;
    } catch (err) {
      if (tempDir) await rm(tempDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** SIGTERM, wait for exit (SIGKILL after 2 s); removes temp files. Idempotent. */
  async stop(): Promise<void> {
    await this.#terminate();
    this.#stopped = true;
    running.delete(this);
    if (this.#tempDir) await rm(this.#tempDir, { recursive: true, force: true });
  }

  /** SIGKILL and wait for exit: a crash. `restart()` can bring it back; call `stop()` to clean up. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!isAlive(child)) return;
    const exited = this.#waitRef(child);
    child.kill('SIGKILL');
    await exited;
    this.#paused = false;
  }

  /** Stop (or, if already dead, just) start again on the same port with the same args. Cache is lost. */
  async restart(): Promise<void> {
    if (this.#stopped) throw new Error('restart() after stop(): start a new server instead');
    await this.#terminate();
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let lastError: unknown;
    // The old process's listening socket is gone once it exited, but retry a
    // bind failure briefly in case the kernel still holds the port.
    while (Date.now() < deadline) {
      const launched = await launch(this.#bin, this.#port, this.#extraArgs, { ca: this.tlsCa, auth: this.auth });
      if ('child' in launched) {
        this.#child = launched.child;
        this.#attachStderr(launched.child, launched.stderr());
        this.#paused = false;
        return;
      }
      lastError = launched.error;
      if (!launched.portInUse) break;
      await sleep(100);
    }
    throw lastError;
  }

  /**
   * SIGSTOP: the process keeps its sockets but answers nothing. The signal is
   * sent synchronously; the promise resolves once every thread is stopped (a
   * worker thread running on another CPU can otherwise still answer a request
   * sent right after).
   */
  async pause(): Promise<void> {
    if (!isAlive(this.#child)) throw new Error('memcached is not running');
    this.#child.kill('SIGSTOP');
    this.#paused = true;
    await waitForThreadState(this.pid, true);
  }

  /** SIGCONT after `pause()`; resolves once the process runs again. */
  async resume(): Promise<void> {
    if (!isAlive(this.#child)) throw new Error('memcached is not running');
    this.#child.kill('SIGCONT');
    this.#paused = false;
    await waitForThreadState(this.pid, false);
  }

  /** @internal used by the exit hook; synchronous, by PID only. */
  killSync(): void {
    const pid = this.#child.pid;
    if (pid !== undefined && isAlive(this.#child)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (this.#tempDir) {
      try {
        rmSync(this.#tempDir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  }

  async #terminate(): Promise<void> {
    const child = this.#child;
    if (!isAlive(child)) return;
    const exited = this.#waitRef(child);
    child.kill('SIGTERM');
    // A stopped process only handles SIGTERM once continued.
    if (this.#paused) child.kill('SIGCONT');
    let timer: NodeJS.Timeout | undefined;
    const escalate = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        if (isAlive(child)) child.kill('SIGKILL');
        resolve();
      }, STOP_GRACE_MS);
    });
    await Promise.race([exited, escalate]);
    clearTimeout(timer);
    await exited;
    this.#paused = false;
  }

  /** Wait for exit while keeping the event loop alive (the child handle is unref'ed). */
  #waitRef(child: ChildProcess): Promise<void> {
    child.ref();
    return waitForExit(child).finally(() => child.unref());
  }

  #attachStderr(child: ChildProcess, initial: string): void {
    this.#stderr = initial;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (child === this.#child) this.#stderr += chunk;
    });
  }
}

type LaunchResult =
  | { child: ChildProcess; stderr: () => string }
  | { error: Error; portInUse: boolean };

async function launch(
  bin: string,
  port: number,
  extraArgs: string[],
  probe: { ca?: string; auth?: { username: string; password: string } },
): Promise<LaunchResult> {
  const args = ['-l', HOST, '-p', String(port), '-U', '0'];
  const user = runAsUser();
  if (user) args.push('-u', user);
  args.push(...extraArgs);

  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  const onStderr = (chunk: string): void => {
    stderr += chunk;
  };
  child.stderr?.on('data', onStderr);
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });
  const exited = waitForExit(child);

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastProbeError: unknown;
  while (Date.now() < deadline) {
    if (spawnError) {
      return { error: new Error(`failed to spawn ${bin}: ${spawnError.message}`), portInUse: false };
    }
    if (!isAlive(child)) {
      await exited;
      // Let the last stderr chunk arrive.
      await sleep(20);
      const portInUse = /address already in use|failed to listen/i.test(stderr);
      return {
        error: new Error(
          `memcached exited during startup (code ${child.exitCode}, signal ${child.signalCode}) ` +
            `on port ${port}; args: ${args.join(' ')}; stderr: ${stderr.trim() || '(empty)'}`,
        ),
        portInUse,
      };
    }
    try {
      await probeVersion(port, { ...probe, timeoutMs: 500 });
      child.stderr?.removeListener('data', onStderr);
      child.unref();
      (child.stderr as net.Socket | null)?.unref();
      return { child, stderr: () => stderr };
    } catch (err) {
      lastProbeError = err;
      await sleep(25);
    }
  }

  const reason = lastProbeError instanceof Error ? lastProbeError.message : String(lastProbeError);
  if (isAlive(child)) {
    child.kill('SIGKILL');
    await exited;
  }
  return {
    error: new Error(
      `memcached on port ${port} did not answer 'version' within ${READY_TIMEOUT_MS} ms ` +
        `(last error: ${reason}); args: ${args.join(' ')}; stderr: ${stderr.trim() || '(empty)'}`,
    ),
    portInUse: false,
  };
}

/** Start a server, run `fn`, always stop the server. */
export async function withMemcached<T>(
  fn: (s: MemcachedServer) => Promise<T>,
  opts?: MemcachedServerOptions,
): Promise<T> {
  const server = await MemcachedServer.start(opts);
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
}
