/**
 * `memcached-lock demo` through the real binary, on each of its backends: MEMCACHED_SERVERS, a
 * private memcached it starts from PATH (and must stop, even when signalled), and the
 * in-process memory store when no memcached exists. Needs `npm run build`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';

import { closedPort, killAllCli, runCli, startCli, type CliResult } from '../helpers/cli.js';
import { MemcachedServer, memcachedBinary } from '../helpers/memcached-server.js';
import { eventually } from '../helpers/util.js';

interface Phase {
  mode: 'optimistic' | 'serialized';
  committed: number;
  conflicts: number;
  unlockedRuns: number;
  finalValue: number;
  expected: number;
}
interface DemoJson {
  backend: string;
  writers: number;
  updates: number;
  results: Phase[];
}

let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
afterEach(() => killAllCli());
after(async () => {
  await server.stop();
});

/** `pgrep -a -x memcached`: pid -> command line (zombies, waiting to be reaped, excluded). */
function memcachedProcesses(): Map<number, string> {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-a', '-x', 'memcached'], { encoding: 'utf8' });
  } catch (err) {
    // pgrep exits 1 when nothing matches
    if ((err as { status?: number }).status !== 1) throw err;
  }
  const found = new Map<number, string>();
  for (const line of out.split('\n').filter(Boolean)) {
    const [pid, ...cmd] = line.split(' ');
    if (!isZombie(Number(pid))) found.set(Number(pid), cmd.join(' '));
  }
  return found;
}

function isZombie(pid: number): boolean {
  try {
    // the state follows the parenthesised command name
    return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // gone already
  }
}

/** Asserts that the demo's private memcached (pid, port from its "backend" line) is gone. */
function assertPrivateServerGone(before: Map<number, string>, pid: number, port: string): void {
  const now = memcachedProcesses();
  assert.equal(before.has(pid), false, 'the private memcached is a new process');
  assert.equal(now.has(pid), false, `memcached pid ${pid} is still running`);
  const left = [...now].filter(([p, cmd]) => !before.has(p) && new RegExp(`-p ${port}\\b`).test(cmd));
  assert.deepEqual(left, [], 'no memcached of the demo is left');
}

const PRIVATE = /a private memcached \((.+), pid (\d+)\) on 127\.0\.0\.1:(\d+)/;

function parseDemo(r: CliResult): DemoJson {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as DemoJson;
}

function assertCorrect(d: DemoJson): void {
  assert.deepEqual(
    d.results.map((p) => p.mode),
    ['optimistic', 'serialized'],
  );
  for (const p of d.results) {
    assert.equal(p.expected, d.writers * d.updates);
    assert.equal(p.committed, p.expected, `${p.mode}: every update committed`);
    assert.equal(p.finalValue, p.expected, `${p.mode}: final value`);
  }
  const serialized = d.results[1] as Phase;
  assert.equal(serialized.conflicts, 0, 'no conflict while the serializer holds the lock');
  assert.equal(serialized.unlockedRuns, 0);
}

/** PATH without any directory that has a memcached in it. */
function pathWithoutMemcached(): string {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((d) => d && !existsSync(path.join(d, 'memcached')))
    .join(path.delimiter);
}

describe('demo', () => {
  test('demo - --quick --json on MEMCACHED_SERVERS: both phases end right, no conflict when serialized', async () => {
    const d = parseDemo(await runCli(['demo', '--quick', '--json'], { env: { MEMCACHED_SERVERS: server.address } }));
    assert.match(d.backend, new RegExp(`memcached at ${server.address} \\(MEMCACHED_SERVERS\\)`));
    assert.deepEqual([d.writers, d.updates], [4, 10]);
    assertCorrect(d);
  });

  test('demo - without MEMCACHED_SERVERS it starts a memcached from PATH and stops it after', async () => {
    const bin = memcachedBinary();
    const before = memcachedProcesses();
    const d = parseDemo(
      await runCli(['demo', '--quick', '--json'], {
        env: { MEMCACHED_BIN: undefined, PATH: `${path.dirname(bin)}${path.delimiter}${process.env.PATH ?? ''}` },
      }),
    );
    const m = PRIVATE.exec(d.backend);
    assert.ok(m, d.backend);
    assertCorrect(d);
    // the demo waited for its server to exit before it exited
    assertPrivateServerGone(before, Number(m[2]), m[3] as string);
  });

  test('demo - SIGTERM mid-run stops its private memcached and its writers', async () => {
    const before = memcachedProcesses();
    const demo = startCli(['demo', '--writers', '2', '--updates', '10000', '--work', 'io'], {
      env: { MEMCACHED_BIN: memcachedBinary() },
    });
    const m = await demo.waitFor('stdout', PRIVATE);
    await demo.waitFor('stdout', /optimistic only/);
    demo.child.kill('SIGTERM');
    // resolves once every process holding the pipes (the forked writers too) has exited
    const r = await demo.exit();
    assert.equal(r.signal, 'SIGTERM', `ends by the signal, as without the demo's handler: ${r.stderr}`);
    // the private server was SIGKILLed; init reaps it once the demo is gone
    await eventually(async () => assertPrivateServerGone(before, Number(m[2]), m[3] as string));
  });

  test('demo - with no memcached anywhere it runs on the in-process memory store and says so', async () => {
    const d = parseDemo(
      await runCli(['demo', '--quick', '--json'], {
        env: { MEMCACHED_BIN: '/nonexistent/memcached', PATH: pathWithoutMemcached() },
      }),
    );
    assert.match(d.backend, /memory/);
    assertCorrect(d);
  });

  test('demo - an unreachable MEMCACHED_SERVERS exits 69 with a one-line error', async () => {
    const servers = `127.0.0.1:${await closedPort()}`;
    const r = await runCli(['demo', '--quick', '--json'], { env: { MEMCACHED_SERVERS: servers } });
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, new RegExp(`^memcached-lock demo: cannot connect to memcached at ${servers}: .*\n$`));
    assert.equal(r.stdout, '');
  });

  test('demo - --writers 0 exits 64 with a one-line error then the usage', async () => {
    const r = await runCli(['demo', '--writers', '0'], { env: { MEMCACHED_SERVERS: server.address } });
    assert.equal(r.code, 64, r.stderr);
    const lines = r.stderr.split('\n');
    assert.match(lines[0] as string, /^memcached-lock demo: --writers must be from 1 to 64, got 0$/);
    assert.match(lines[1] as string, /^Usage: memcached-lock demo/);
    assert.equal(r.stdout, '');
  });
});
