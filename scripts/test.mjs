#!/usr/bin/env node
// Test runner for memcached-lock: checks for memcached, collects test files and
// runs them with node's built-in test runner (TypeScript through tsx).
//
//   node scripts/test.mjs                      unit + contract + integration
//   node scripts/test.mjs test/unit lock       narrow by path or substring
//   TEST_ONLY=harness,fencing node scripts/test.mjs
//   node scripts/test.mjs test/faults          fault/soak suites only when named
//   node scripts/test.mjs --test-name-pattern=renew   (--flags go to node)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MISSING =
  'memcached-lock tests need memcached >= 1.6 (apt-get install memcached, brew install memcached, or set MEMCACHED_BIN)';
const DEFAULT_DIRS = ['test/unit', 'test/contract', 'test/integration'];
const OPT_IN_DIRS = ['test/faults', 'test/soak'];

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function findMemcached() {
  if (process.env.MEMCACHED_BIN) {
    return isExecutable(process.env.MEMCACHED_BIN) ? process.env.MEMCACHED_BIN : null;
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, 'memcached'))) return path.join(dir, 'memcached');
  }
  // apt installs to /usr/bin, which a trimmed PATH may lack.
  return isExecutable('/usr/bin/memcached') ? '/usr/bin/memcached' : null;
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function aptInstall() {
  console.log('memcached not found: installing it with apt-get');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  if (update.status !== 0) return;
  spawnSync('apt-get', ['install', '-y', '-qq', 'memcached', 'openssl'], { stdio: 'inherit', env });
}

function ensureMemcached() {
  let bin = findMemcached();
  if (!bin && !process.env.MEMCACHED_BIN && isRoot() && existsSync('/usr/bin/apt-get')) {
    aptInstall();
    bin = findMemcached();
  }
  if (!bin) {
    console.error(MISSING);
    process.exit(1);
  }
  let version = '';
  try {
    version = execFileSync(bin, ['-V'], { encoding: 'utf8' }).trim();
  } catch {
    // reported below
  }
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  if (!m || Number(m[1]) < 1 || (Number(m[1]) === 1 && Number(m[2]) < 6)) {
    console.error(`${MISSING}; found ${version || 'an unusable binary'} at ${bin}`);
    process.exit(1);
  }
  console.log(`using ${version} (${bin})`);
  return bin;
}

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'helpers') walk(full, out);
    } else if (e.isFile() && e.name.endsWith('.test.ts')) {
      out.push(full);
    }
  }
  return out;
}

/** Repo-relative, forward-slash paths of every *.test.ts under `dirs`, sorted. */
function collect(dirs) {
  const files = [];
  for (const d of dirs) walk(path.join(ROOT, d), files);
  return [...new Set(files.map((f) => path.relative(ROOT, f).split(path.sep).join('/')))].sort();
}

function isOptIn(rel) {
  return OPT_IN_DIRS.some((d) => rel === d || rel.startsWith(`${d}/`));
}

function selectFiles(filters) {
  const all = collect(['test']);
  const defaults = all.filter((f) => DEFAULT_DIRS.some((d) => f.startsWith(`${d}/`)));
  if (filters.length === 0) return defaults;

  const picked = new Set();
  for (const raw of filters) {
    const abs = path.resolve(process.cwd(), raw);
    const rel = path.relative(ROOT, abs).split(path.sep).join('/');
    if (existsSync(abs) && statSync(abs).isFile()) {
      picked.add(rel);
      continue;
    }
    if (existsSync(abs) && statSync(abs).isDirectory()) {
      // A directory named explicitly includes opt-in suites too.
      for (const f of all) if (rel === '' || f.startsWith(`${rel}/`)) picked.add(f);
      continue;
    }
    // Substring: fault and soak suites only when the filter names them.
    const needle = raw.split(path.sep).join('/');
    const optIn = /faults|soak/.test(needle);
    for (const f of all) {
      if (f.includes(needle) && (!isOptIn(f) || optIn)) picked.add(f);
    }
  }
  return [...picked].sort();
}

function nodeSupports(major, minor) {
  const [maj, min] = process.versions.node.split('.').map(Number);
  return maj > major || (maj === major && min >= minor);
}

// ---------------------------------------------------------------------------

const cliArgs = process.argv.slice(2);
const nodeFlags = cliArgs.filter((a) => a.startsWith('--'));
const filters = [
  ...cliArgs.filter((a) => !a.startsWith('--')),
  ...(process.env.TEST_ONLY ?? '').split(/[,\s]+/).filter(Boolean),
];

const memcachedBin = ensureMemcached();
const files = selectFiles(filters);
if (files.length === 0) {
  console.error(
    filters.length > 0
      ? `no test files match ${filters.map((f) => JSON.stringify(f)).join(', ')}`
      : `no test files found under ${DEFAULT_DIRS.join(', ')}`,
  );
  process.exit(1);
}

const args = ['--import', 'tsx', '--import', './test/helpers/setup.ts', '--test'];
// --test-concurrency landed in Node 20.10, --test-timeout in 20.11.
if (nodeSupports(20, 10)) args.push('--test-concurrency=2');
if (nodeSupports(20, 11)) args.push('--test-timeout=120000');
// Spec on a terminal; elsewhere Node's default (TAP on Node 20), whose closing
// "# pass N" / "# fail N" lines CI reads.
if (process.stdout.isTTY && !nodeFlags.some((f) => f.startsWith('--test-reporter'))) {
  args.push('--test-reporter=spec');
}
args.push(...nodeFlags, ...files);

console.log(`running ${files.length} test file(s): node ${args.join(' ')}`);
const child = spawn(process.execPath, args, {
  cwd: ROOT,
  stdio: 'inherit',
  env: { ...process.env, MEMCACHED_BIN: memcachedBin },
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => child.kill(sig));
}
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal ? 1 : 0));
});
