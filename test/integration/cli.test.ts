/**
 * The `memcached-lock` binary against real memcached: `run` (mutual exclusion across processes,
 * busy and timeout codes, the lost-lock path, signal forwarding, exit codes, the command's
 * environment), bad usage, `status`, `release`, `doctor`, help, version and colour.
 * Needs `npm run build` (the binary runs the built code).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';

import {
  ANSI,
  BIN,
  PACKAGE_VERSION,
  closedPort,
  killAllCli,
  runCli,
  startCli,
  type CliProcess,
  type CliResult,
} from '../helpers/cli.js';
import { Locks } from '../../src/index.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { uniqueKey } from '../helpers/util.js';

const EXIT = { OK: 0, UNSAFE: 1, USAGE: 64, UNAVAILABLE: 69, BUSY: 75, TIMEOUT: 76, LOST: 77 } as const;

/**
 * The command of most `run` tests: prints "ready <fencing token> <key>", notes in `record` any
 * forwarded signal (then exits 40 + its number), and exits 0 once the file `go` exists.
 */
const HOLDER_SOURCE = `
const fs = require('node:fs');
const os = require('node:os');
const [record, go] = process.argv.slice(2);
const note = (s) => fs.appendFileSync(record, s + '\\n');
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { note(sig); process.exit(40 + os.constants.signals[sig]); });
}
const timer = setInterval(() => {
  if (fs.existsSync(go)) { clearInterval(timer); note('finished'); process.exit(0); }
}, 20);
process.stdout.write('ready ' + process.env.MEMCACHED_LOCK_FENCING_TOKEN + ' ' + process.env.MEMCACHED_LOCK_KEY + '\\n');
`;

/** For `node -e`: appends "start|end <pid> <monotonic ns> <fencing token>" to argv[1], 200 ms apart. */
const INTERVAL_SOURCE = `
const fs = require('node:fs');
const file = process.argv[1];
const line = (what) => fs.appendFileSync(file, [what, process.pid, process.hrtime.bigint(), process.env.MEMCACHED_LOCK_FENCING_TOKEN].join(' ') + '\\n');
line('start');
setTimeout(() => line('end'), 200);
`;

let server: MemcachedServer;
let dir: string;
let holderScript: string;
const ownServers: MemcachedServer[] = [];

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
  dir = mkdtempSync(path.join(os.tmpdir(), 'memcached-lock-cli-test-'));
  holderScript = path.join(dir, 'holder.cjs');
  writeFileSync(holderScript, HOLDER_SOURCE);
});
afterEach(async () => {
  killAllCli();
  await Promise.all(ownServers.splice(0).map((s) => s.stop()));
});
after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A server of this test only (stopped after it); evictions on unless told otherwise. */
async function ownServer(args: string[] = ['-M']): Promise<MemcachedServer> {
  const s = await MemcachedServer.start({ args });
  ownServers.push(s);
  return s;
}

function env(servers = server.address): Record<string, string> {
  return { MEMCACHED_SERVERS: servers };
}

function tempFile(name: string): string {
  return path.join(dir, uniqueKey(name));
}

/** `status <key> --json`: the one row. */
async function statusOf(key: string, servers = server.address): Promise<Record<string, unknown>> {
  const r = await runCli(['status', key, '--json'], { env: env(servers) });
  assert.equal(r.code, EXIT.OK, r.stderr);
  const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
  assert.equal(rows.length, 1);
  return rows[0] as Record<string, unknown>;
}

interface Holder {
  readonly cli: CliProcess;
  readonly token: string;
  /** Lets the command exit 0. */
  finish(): void;
  /** What the command noted: forwarded signals, "finished". */
  notes(): string[];
}

/** Starts `run <key> [runArgs] -- node holder.cjs` and resolves once the command runs. */
async function hold(key: string, options: { runArgs?: string[]; servers?: string } = {}): Promise<Holder> {
  const record = tempFile('record');
  const go = tempFile('go');
  const cli = startCli(['run', key, ...(options.runArgs ?? []), '--', process.execPath, holderScript, record, go], {
    env: env(options.servers),
  });
  const m = await cli.waitFor('stdout', /ready (\d+) (\S+)\n/);
  assert.equal(m[2], key);
  return {
    cli,
    token: m[1] as string,
    finish: () => writeFileSync(go, ''),
    notes: () => (existsSync(record) ? readFileSync(record, 'utf8').split('\n').filter(Boolean) : []),
  };
}

/** A command that creates `marker` if it ever runs. */
function touchCommand(marker: string): string[] {
  return [process.execPath, '-e', `require('node:fs').writeFileSync(${JSON.stringify(marker)}, '')`];
}

function assertUsageError(r: CliResult, message: RegExp): void {
  assert.equal(r.code, EXIT.USAGE, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n');
  assert.match(lines[0] as string, /^memcached-lock\b/);
  assert.match(lines[0] as string, message);
  assert.match(lines[1] as string, /^Usage: memcached-lock\b/);
  assert.equal(r.stdout, '');
}

describe('cli run', () => {
  test('cli run - concurrent runs of one key never overlap', async () => {
    const key = uniqueKey('cli-overlap');
    const file = tempFile('intervals');
    const runs = Array.from({ length: 4 }, () =>
      runCli(['run', key, '--', process.execPath, '-e', INTERVAL_SOURCE, file], { env: env() }),
    );
    const results = await Promise.all(runs);
    for (const r of results) assert.equal(r.code, EXIT.OK, r.stderr);

    const byPid = new Map<string, { start?: bigint; end?: bigint; token?: bigint }>();
    for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
      const [what, pid, at, token] = line.split(' ') as [string, string, string, string];
      const entry = byPid.get(pid) ?? {};
      if (what === 'start') {
        entry.start = BigInt(at);
        entry.token = BigInt(token);
      } else {
        entry.end = BigInt(at);
      }
      byPid.set(pid, entry);
    }
    const intervals = [...byPid.values()].sort((a, b) => (a.start! < b.start! ? -1 : 1));
    assert.equal(intervals.length, 4);
    for (const i of intervals) {
      assert.ok(i.start !== undefined && i.end !== undefined && i.end > i.start, 'every run has a start and an end');
    }
    for (let i = 1; i < intervals.length; i++) {
      const prev = intervals[i - 1]!;
      const cur = intervals[i]!;
      assert.ok(cur.start! > prev.end!, `run ${i} started before run ${i - 1} ended`);
      assert.ok(cur.token! > prev.token!, 'fencing tokens grow in the order the lock was held');
    }
    assert.equal((await statusOf(key)).held, false);
  });

  test('cli run - --no-wait exits 75 while another process holds the key, without running the command', async () => {
    const key = uniqueKey('cli-busy');
    const holder = await hold(key);
    const marker = tempFile('marker');
    const r = await runCli(['run', key, '--no-wait', '--', ...touchCommand(marker)], { env: env() });
    assert.equal(r.code, EXIT.BUSY, r.stderr);
    assert.match(r.stderr, /busy/);
    assert.equal(existsSync(marker), false, 'the command must not run');
    // "at once": it answered while the holder still runs, so it did not wait for the lock
    assert.equal(holder.cli.child.exitCode, null);
    holder.finish();
    assert.equal((await holder.cli.exit()).code, EXIT.OK);
  });

  test('cli run - --wait 1s exits 76 when the key stays held', async () => {
    const key = uniqueKey('cli-timeout');
    const holder = await hold(key);
    const marker = tempFile('marker');
    const r = await runCli(['run', key, '--wait', '1s', '--', ...touchCommand(marker)], { env: env() });
    assert.equal(r.code, EXIT.TIMEOUT, r.stderr);
    assert.match(r.stderr, /still taken/);
    assert.equal(existsSync(marker), false, 'the command must not run');
    holder.finish();
    assert.equal((await holder.cli.exit()).code, EXIT.OK);
  });

  test('cli run - losing the lock (server killed) sends SIGTERM to the command and exits 77', async () => {
    const s = await ownServer();
    const holder = await hold(uniqueKey('cli-lost'), { servers: s.address, runArgs: ['--ttl', '2s'] });
    await s.kill();
    const r = await holder.cli.exit();
    assert.equal(r.code, EXIT.LOST, r.stderr);
    assert.match(r.stderr, /lock ".+" was lost .*sending SIGTERM to the command/);
    assert.deepEqual(holder.notes(), ['SIGTERM']);
  });

  test('cli run - --on-lost KILL kills the command and exits 77', async () => {
    const s = await ownServer();
    const holder = await hold(uniqueKey('cli-lost-kill'), { servers: s.address, runArgs: ['--ttl', '2s', '--on-lost', 'KILL'] });
    await s.kill();
    const r = await holder.cli.exit();
    assert.equal(r.code, EXIT.LOST, r.stderr);
    assert.match(r.stderr, /was lost .*sending SIGKILL to the command/);
    assert.deepEqual(holder.notes(), [], 'SIGKILL cannot be trapped');
  });

  test('cli run - --on-lost keep warns, lets the command finish, and still exits 77', async () => {
    const s = await ownServer();
    const holder = await hold(uniqueKey('cli-lost-keep'), { servers: s.address, runArgs: ['--ttl', '2s', '--on-lost', 'keep'] });
    await s.kill();
    await holder.cli.waitFor('stderr', /was lost .*the command keeps running without it/);
    assert.equal(holder.cli.child.exitCode, null, 'the CLI waits for the command');
    holder.finish();
    const r = await holder.cli.exit();
    // documented: 77 whenever the lock was lost while the command ran, whatever --on-lost did
    assert.equal(r.code, EXIT.LOST, r.stderr);
    assert.deepEqual(holder.notes(), ['finished']);
  });

  test('cli run - with --no-renew the lease ending after --ttl is a loss: SIGTERM, then 77', async () => {
    const key = uniqueKey('cli-no-renew');
    const holder = await hold(key, { runArgs: ['--ttl', '1s', '--no-renew'] });
    const r = await holder.cli.exit();
    assert.equal(r.code, EXIT.LOST, r.stderr);
    assert.match(r.stderr, /was lost \(expired\); sending SIGTERM to the command/);
    assert.deepEqual(holder.notes(), ['SIGTERM']);
  });

  for (const [signal, code] of [
    ['SIGTERM', 40 + os.constants.signals.SIGTERM],
    ['SIGINT', 40 + os.constants.signals.SIGINT],
    ['SIGHUP', 40 + os.constants.signals.SIGHUP],
  ] as const) {
    test(`cli run - ${signal} is forwarded to the command, its exit code returned, the lock released`, async () => {
      const key = uniqueKey(`cli-${signal}`);
      const holder = await hold(key);
      assert.equal((await statusOf(key)).held, true);
      holder.cli.child.kill(signal);
      const r = await holder.cli.exit();
      assert.equal(r.code, code, r.stderr);
      assert.deepEqual(holder.notes(), [signal]);
      assert.equal((await statusOf(key)).held, false);
    });
  }

  test("cli run - the command's exit code is passed through; key and fencing token are in its env", async () => {
    const key = uniqueKey('cli-exit-code');
    const r = await runCli(
      [
        'run',
        key,
        '--',
        process.execPath,
        '-e',
        'console.log("key=" + process.env.MEMCACHED_LOCK_KEY + " token=" + process.env.MEMCACHED_LOCK_FENCING_TOKEN); process.exit(7)',
      ],
      { env: env() },
    );
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stdout, new RegExp(`^key=${key} token=\\d+\\n$`));
    assert.equal((await statusOf(key)).held, false);
  });

  test('cli run - a command ended by a signal gives 128 + the signal number', async () => {
    const key = uniqueKey('cli-signalled');
    const r = await runCli(['run', key, '--', process.execPath, '-e', 'process.kill(process.pid, "SIGKILL")'], { env: env() });
    assert.equal(r.code, 128 + os.constants.signals.SIGKILL, r.stderr);
    assert.equal((await statusOf(key)).held, false);
  });

  test('cli run - a command that cannot be started exits 127 and releases the lock', async () => {
    const key = uniqueKey('cli-enoent');
    const r = await runCli(['run', key, '--', path.join(dir, 'no-such-command')], { env: env() });
    assert.equal(r.code, 127, r.stderr);
    assert.match(r.stderr, /cannot run/);
    assert.equal((await statusOf(key)).held, false);
  });
});

describe('cli - unreachable server', () => {
  test('cli - run, status and release exit 69 when no server answers', async () => {
    const servers = `127.0.0.1:${await closedPort()}`;
    const key = uniqueKey('cli-unreachable');
    const marker = tempFile('marker');
    const results = await Promise.all([
      runCli(['run', key, '--', ...touchCommand(marker)], { env: env(servers) }),
      runCli(['run', key, '--no-wait', '--', ...touchCommand(marker)], { env: env(servers) }),
      runCli(['status', key], { env: env(servers) }),
      runCli(['release', key, '--force', '--yes'], { env: env(servers) }),
      // the flag wins over the environment
      runCli(['status', key, '--servers', servers], { env: env() }),
    ]);
    for (const r of results) {
      assert.equal(r.code, EXIT.UNAVAILABLE, r.stderr);
      assert.match(r.stderr, new RegExp(`memcached-lock: .*${servers}`));
    }
    assert.equal(existsSync(marker), false);
  });
});

// not concurrent: afterEach kills every CLI still running
describe('cli - bad usage', () => {
  const marker = (): string => tempFile('marker');
  let inspector: Locks;
  before(() => {
    inspector = new Locks({ servers: server.address, prefix: 'lock:' });
  });
  after(() => inspector.close());
  const cases: [string, (key: string, m: string) => string[], RegExp][] = [
    ['an unknown flag', (k, m) => ['run', k, '--bogus', '--', ...touchCommand(m)], /unknown option --bogus/],
    ['an unknown short flag', (k, m) => ['run', k, '-x', '--', ...touchCommand(m)], /unknown option -x/],
    ['a missing "--"', (k, m) => ['run', k, 'touch', m], /needs "--" before the command/],
    ['no command after "--"', (k) => ['run', k, '--'], /needs a command after "--"/],
    ['no key', (_k, m) => ['run', '--', ...touchCommand(m)], /needs a lock key/],
    ['a TTL that is not a duration', (k, m) => ['run', k, '--ttl', 'abc', '--', ...touchCommand(m)], /--ttl must be a duration/],
    ['a TTL under 1 s', (k, m) => ['run', k, '--ttl', '10ms', '--', ...touchCommand(m)], /--ttl must be from 1s/],
    ['a flag without its value', (k, m) => ['run', k, '--ttl', '--', ...touchCommand(m)], /--ttl needs a value/],
    ['--wait with --no-wait', (k, m) => ['run', k, '--wait', '1s', '--no-wait', '--', ...touchCommand(m)], /exclude each other/],
    ['an unknown --on-lost', (k, m) => ['run', k, '--on-lost', 'STOP', '--', ...touchCommand(m)], /--on-lost must be/],
    ['an unknown command', (k) => ['frobnicate', k], /unknown command "frobnicate"/],
    ['no command at all', () => [], /a command is needed/],
    ['status without a key', () => ['status'], /needs at least one lock key/],
    ['demo with an argument', () => ['demo', 'now'], /demo takes no arguments/],
    ['bench with an argument', () => ['bench', '--', 'now'], /bench takes no arguments/],
  ];
  for (const [what, argv, message] of cases) {
    test(`cli usage - ${what} exits 64 with a one-line error then the usage, and locks nothing`, async () => {
      const key = uniqueKey('cli-usage');
      const m = marker();
      const r = await runCli(argv(key, m), { env: env() });
      assertUsageError(r, message);
      assert.equal(existsSync(m), false, 'nothing ran');
      // in-process, as `status` would (tested above), to keep this table fast
      assert.equal(await inspector.inspect(key), null, 'nothing is locked');
    });
  }
});

describe('cli status', () => {
  test('cli status - human and --json show holder, TTL left and fencing token, or free', async () => {
    const startedAt = Date.now();
    const key = uniqueKey('cli-status');
    const freeKey = uniqueKey('cli-status-free');
    const holder = await hold(key, { runArgs: ['--ttl', '20s', '--label', 'nightly report'] });

    const json = await runCli(['status', key, freeKey, '--json'], { env: env() });
    assert.equal(json.code, EXIT.OK, json.stderr);
    const [held, free] = JSON.parse(json.stdout) as [Record<string, unknown>, Record<string, unknown>];
    assert.equal(held.key, key);
    assert.equal(held.held, true);
    assert.equal(held.fencingToken, holder.token, 'the token the command saw');
    assert.equal(held.server, server.address);
    const remainingMs = held.remainingMs as number;
    // memcached keeps the key ceil(TTL) + 2 whole seconds (src/store/ttl.ts): an upper bound
    assert.ok(remainingMs > 0 && remainingMs <= 22_000, `remainingMs ${remainingMs} within the TTL`);
    const owner = held.owner as { host: string; pid: number; since: number; label: string };
    assert.equal(owner.host, os.hostname());
    assert.equal(owner.pid, holder.cli.pid, 'the pid of the CLI that holds it');
    assert.equal(owner.label, 'nightly report');
    assert.ok(owner.since >= startedAt - 1000 && owner.since <= Date.now(), `since ${owner.since}`);
    assert.deepEqual(free, { key: freeKey, held: false });

    const human = await runCli(['status', key, freeKey], { env: env() });
    assert.equal(human.code, EXIT.OK, human.stderr);
    const lines = human.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0] as string, /^KEY\s+STATE\s+TTL LEFT\s+HOLDER\s+SINCE\s+FENCING TOKEN$/);
    assert.match(lines[1] as string, new RegExp(`^${key}\\s+held\\s+<= \\d+(\\.\\d)? s\\s+${os.hostname()} pid ${holder.cli.pid} \\(nightly report\\)\\s+\\S+Z\\s+${holder.token}$`));
    assert.match(lines[2] as string, new RegExp(`^${freeKey}\\s+free\\s+-`));

    holder.finish();
    assert.equal((await holder.cli.exit()).code, EXIT.OK);
    assert.equal((await statusOf(key)).held, false);
  });
});

describe('cli release', () => {
  test('cli release - without --force exits 64 and leaves the lock held', async () => {
    const key = uniqueKey('cli-release-noforce');
    const holder = await hold(key);
    const r = await runCli(['release', key], { env: env() });
    assertUsageError(r, /needs --force/);
    assert.equal((await statusOf(key)).held, true);
    holder.finish();
    assert.equal((await holder.cli.exit()).code, EXIT.OK);
  });

  test('cli release - --force --yes deletes a held lock; its holder then reports the loss (77)', async () => {
    const key = uniqueKey('cli-release-force');
    const holder = await hold(key);
    const r = await runCli(['release', key, '--force', '--yes', '--json'], { env: env() });
    assert.equal(r.code, EXIT.OK, r.stderr);
    const out = JSON.parse(r.stdout) as { key: string; released: boolean; wasHeld: boolean; owner: { pid: number } };
    assert.deepEqual([out.key, out.released, out.wasHeld, out.owner.pid], [key, true, true, holder.cli.pid]);
    assert.equal((await statusOf(key)).held, false);
    holder.finish();
    const h = await holder.cli.exit();
    assert.equal(h.code, EXIT.LOST, h.stderr);
    assert.match(h.stderr, /was lost/);
  });

  test('cli release - a free key is reported free', async () => {
    const key = uniqueKey('cli-release-free');
    const human = await runCli(['release', key, '--force', '--yes'], { env: env() });
    assert.equal(human.code, EXIT.OK, human.stderr);
    assert.equal(human.stdout, `lock "${key}" is free\n`);
    const json = await runCli(['release', key, '--force', '-y', '--json'], { env: env() });
    assert.equal(json.code, EXIT.OK, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { key, released: false, wasHeld: false });
  });
});

describe('cli doctor', () => {
  test('cli doctor - an eviction-safe (-M) server passes with findings', async () => {
    const r = await runCli(['doctor'], { env: env() });
    assert.equal(r.code, EXIT.OK, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^${server.address}  OK$`, 'm'));
    assert.match(r.stdout, /ok\s+reachable: connected/);
    assert.match(r.stdout, /ok\s+version: memcached \d+\.\d+/);
    assert.match(r.stdout, /ok\s+eviction: evictions off \(-M\)/);
    assert.match(r.stdout, /latency: round trip/);
  });

  test('cli doctor - a server that may evict lock keys exits 1 and prints the fix', async () => {
    const evicting = await ownServer([]);
    const r = await runCli(['doctor', evicting.address], { env: env() });
    assert.equal(r.code, EXIT.UNSAFE, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^${evicting.address}  UNSAFE$`, 'm'));
    assert.match(r.stdout, /FAIL\s+eviction: .*could be evicted/);
    assert.match(r.stdout, /fix: .*-M/);
  });

  test('cli doctor - a server started with -Y reports that authentication is on', async () => {
    const auth = { username: 'doctor', password: 'pw-1' };
    const secured = await MemcachedServer.start({ args: ['-M'], auth });
    ownServers.push(secured);
    const r = await runCli(['doctor', secured.address, '--username', auth.username, '--password', auth.password], { env: env() });
    assert.equal(r.code, EXIT.OK, r.stdout + r.stderr);
    assert.match(r.stdout, /ok\s+auth: ASCII auth \(-Y\) required and accepted/);
    const plain = await runCli(['doctor'], { env: env() });
    assert.match(plain.stdout, /ok\s+auth: no authentication/);
  });

  test('cli doctor - an unreachable server exits 1', async () => {
    const address = `127.0.0.1:${await closedPort()}`;
    const r = await runCli(['doctor', address], { env: env() });
    assert.equal(r.code, EXIT.UNSAFE, r.stdout + r.stderr);
    assert.match(r.stdout, /FAIL\s+reachable: /);
  });

  test('cli doctor - --json gives one parseable report per server, in order', async () => {
    const evicting = await ownServer([]);
    const closed = `127.0.0.1:${await closedPort()}`;
    const r = await runCli(['doctor', server.address, evicting.address, closed, '--json'], { env: env() });
    assert.equal(r.code, EXIT.UNSAFE, r.stderr);
    type Report = { server: string; ok: boolean; version?: string; findings: { level: string; check: string; fix?: string }[] };
    const reports = JSON.parse(r.stdout) as Report[];
    assert.deepEqual(
      reports.map((x) => [x.server, x.ok]),
      [
        [server.address, true],
        [evicting.address, false],
        [closed, false],
      ],
    );
    const finding = (rep: Report, check: string) => rep.findings.find((f) => f.check === check);
    assert.match(reports[0]!.version ?? '', /^\d+\.\d+/);
    assert.equal(finding(reports[0]!, 'eviction')?.level, 'ok');
    assert.equal(finding(reports[1]!, 'eviction')?.level, 'fail');
    assert.match(finding(reports[1]!, 'eviction')?.fix ?? '', /-M/);
    assert.equal(finding(reports[2]!, 'reachable')?.level, 'fail');
  });
});

describe('cli help, version and output', () => {
  const COMMANDS = ['run', 'status', 'release', 'doctor', 'demo', 'bench'];

  test('cli help - every command prints its usage with examples and exits 0', async () => {
    const runs = await Promise.all([
      ...COMMANDS.map((c) => runCli([c, '--help'])),
      ...COMMANDS.map((c) => runCli([c, '-h'])),
      ...COMMANDS.map((c) => runCli(['help', c])),
    ]);
    for (const [i, r] of runs.entries()) {
      const c = COMMANDS[i % COMMANDS.length] as string;
      assert.equal(r.code, EXIT.OK, `${c}: ${r.stderr}`);
      assert.equal(r.stderr, '');
      assert.ok(r.stdout.startsWith(`Usage: memcached-lock ${c}`), `${c}: ${r.stdout}`);
      assert.match(r.stdout, new RegExp(`\\nExamples:\\n\\s+(npx )?memcached-lock ${c}\\b`));
    }
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = await runCli(args);
      assert.equal(r.code, EXIT.OK, r.stderr);
      assert.ok(r.stdout.startsWith('Usage: memcached-lock <command>'));
      for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`^  ${c}\\b`, 'm'));
      assert.match(r.stdout, /\nExamples:\n/);
    }
  });

  test('cli help - run documents the exit codes these tests check', async () => {
    const r = await runCli(['run', '--help']);
    const help = r.stdout.replace(/\s+/g, ' ');
    assert.match(help, /the command's own code \(128\+N if killed by signal N\)/);
    for (const [code, what] of [
      [EXIT.BUSY, 'lock busy'],
      [EXIT.TIMEOUT, 'wait timed out'],
      [EXIT.LOST, 'lock lost'],
      [EXIT.USAGE, 'bad usage'],
      [EXIT.UNAVAILABLE, 'server unreachable'],
    ] as const) {
      assert.ok(help.includes(`${code} ${what}`), `run --help documents ${code} ${what}`);
    }
  });

  test("cli version - --version and -V print package.json's version", async () => {
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag]);
      assert.equal(r.code, EXIT.OK, r.stderr);
      assert.equal(r.stdout, `${PACKAGE_VERSION}\n`);
    }
  });

  test('cli output - no ANSI escapes when not a terminal, with or without NO_COLOR', async () => {
    const closed = `127.0.0.1:${await closedPort()}`;
    const key = uniqueKey('cli-nocolour');
    for (const noColor of [undefined, '1']) {
      const e = { ...env(), NO_COLOR: noColor, TERM: 'xterm-256color' };
      const runs = await Promise.all([
        runCli(['doctor', server.address, closed], { env: e }),
        runCli(['status', key], { env: e }),
        runCli(['run', key, '--bogus'], { env: e }),
      ]);
      for (const r of runs) {
        assert.doesNotMatch(r.stdout, ANSI);
        assert.doesNotMatch(r.stderr, ANSI);
      }
    }
  });

  const script = spawnSync('script', ['--version'], { encoding: 'utf8' });
  const hasScript = script.status === 0 && /util-linux/.test(script.stdout);
  test('cli output - colour on a terminal, none there with NO_COLOR=1', { skip: hasScript ? false : 'needs util-linux script(1) for a pty' }, async () => {
    const closed = `127.0.0.1:${await closedPort()}`;
    const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
    const line = [process.execPath, BIN, 'doctor', closed].map(quote).join(' ');
    for (const [noColor, coloured] of [
      [undefined, true],
      ['1', false],
    ] as const) {
      const r = await runCli(['-qec', line, '/dev/null'], { command: 'script', env: { NO_COLOR: noColor, TERM: 'xterm-256color' } });
      assert.equal(r.code, EXIT.UNSAFE, r.stdout + r.stderr);
      assert.match(r.stdout, /UNSAFE/);
      if (coloured) assert.match(r.stdout, ANSI);
      else assert.doesNotMatch(r.stdout, ANSI);
    }
  });
});
