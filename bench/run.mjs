#!/usr/bin/env node
// The benchmark suite (docs/PERFORMANCE.md). `npm run bench` builds the library first.
//
//   node bench/run.mjs [--quick] [--only <scenario>[,<scenario>...]] [--json] [--save <file>]
//
// Starts its own memcached and redis-server on free loopback ports and stops them by PID.
// Progress goes to stderr; stdout gets the results only (a table, or one JSON document).
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { serverVersions, startMemcached, startRedis, stopAll } from './lib/servers.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')

const SCENARIOS = ['sequential', 'concurrent64', 'contended', 'serializer', 'scale']

function parseArgs(argv) {
  const o = { quick: false, json: false, only: SCENARIOS, save: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') o.quick = true
    else if (a === '--json') o.json = true
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i]
      const list = (v ?? '').split(',').filter(Boolean)
      const bad = list.filter((s) => !SCENARIOS.includes(s))
      if (list.length === 0 || bad.length) usage(`--only expects one or more of ${SCENARIOS.join(', ')}, got ${JSON.stringify(v ?? '')}`)
      o.only = SCENARIOS.filter((s) => list.includes(s))
    } else if (a === '--save' || a.startsWith('--save=')) {
      o.save = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i]
      if (!o.save) usage('--save expects a file name')
    } else if (a === '--help' || a === '-h') usage()
    else usage(`unknown argument ${JSON.stringify(a)}`)
  }
  return o
}

function usage(error) {
  const text = `usage: node bench/run.mjs [--quick] [--only ${SCENARIOS.join('|')}[,...]] [--json] [--save FILE]
  --quick   a ~1-minute smoke run (shorter samples, fewer updates)
  --only    run only these scenarios (comma-separated)
  --json    print one JSON document on stdout instead of tables
  --save    also write that JSON document to FILE`
  if (error) {
    console.error(`bench: ${error}\n${text}`)
    process.exit(2)
  }
  console.log(text)
  process.exit(0)
}

const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)

function ensureDependencies() {
  if (existsSync(path.join(here, 'node_modules', 'redlock')) && existsSync(path.join(here, 'node_modules', 'redis-semaphore'))) return
  const lock = existsSync(path.join(here, 'package-lock.json'))
  log(`bench/node_modules missing: npm ${lock ? 'ci' : 'install'} --prefix bench`)
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  // npm's own output goes to stderr, so that --json keeps stdout clean
  const r = spawnSync(npm, [lock ? 'ci' : 'install', '--prefix', here, '--no-audit', '--no-fund'], { stdio: ['ignore', 2, 2] })
  if (r.status !== 0) throw new Error(`npm ${lock ? 'ci' : 'install'} --prefix bench failed (exit ${r.status})`)
}

/**
 * Copies dist/esm to a private folder and points every process of the run at it: the build
 * measured stays the same even if dist/ is rebuilt meanwhile. Waits a little for a build in
 * progress (dist/ missing) to finish.
 */
async function snapshotLibrary() {
  const dist = path.join(root, 'dist', 'esm')
  for (let i = 0; !existsSync(path.join(dist, 'index.js')); i++) {
    if (i === 0) log('dist/esm/index.js is missing: waiting up to 60 s for a build in progress')
    if (i >= 120) throw new Error('dist/esm/index.js is missing: run `npm run build` first (or use `npm run bench`)')
    await new Promise((r) => setTimeout(r, 500))
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'memcached-lock-bench-'))
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  cpSync(dist, path.join(dir, 'esm'), { recursive: true })
  process.env.MEMCACHED_LOCK_BENCH_LIB = pathToFileURL(path.join(dir, 'esm', 'index.js')).href
  const git = (...args) => spawnSync('git', args, { cwd: root, encoding: 'utf8' }).stdout?.trim() ?? ''
  const commit = git('rev-parse', '--short', 'HEAD')
  const dirty = git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean).length
  return commit ? `${commit}${dirty ? ` + ${dirty} uncommitted change(s) in src/` : ''}` : 'unknown'
}

function machine() {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown'
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel
  } catch {
    // not Linux
  }
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    ...serverVersions(),
  }
}

/** The targets of issues 8 and 4, checked against this run's ratios. */
function targets(r) {
  const t = []
  const add = (scenario, name, target, measured, ok) =>
    t.push({ scenario, name, target, measured: typeof measured === 'number' ? Math.round(measured * 1000) / 1000 : measured, met: Boolean(ok) })
  if (r.sequential) {
    const x = r.sequential.ratios
    add('sequential', 'memcached-lock vs raw floor', '>= 0.9x', x['memcached-lock / raw floor'], x['memcached-lock / raw floor'] >= 0.9)
    add('sequential', 'memcached-lock vs redlock', '>= 1.5x', x['memcached-lock / redlock'], x['memcached-lock / redlock'] >= 1.5)
  }
  if (r.concurrent64) {
    const x = r.concurrent64.ratios
    add('concurrent64', 'memcached-lock vs raw floor', '>= 1.0x', x['memcached-lock / raw floor'], x['memcached-lock / raw floor'] >= 1.0)
    add('concurrent64', 'memcached-lock vs redlock', '>= 2x', x['memcached-lock / redlock'], x['memcached-lock / redlock'] >= 2)
  }
  if (r.contended) {
    for (const [vname, v] of Object.entries(r.contended.variants)) {
      const ml = v.summary['memcached-lock']
      for (const rl of ['redlock (10 ms retry)', 'redlock (200 ms retry)']) {
        const p99 = v.ratios[`wait p99: memcached-lock / ${rl}`]
        const gap = v.ratios[`gap to other p50: memcached-lock / ${rl}`]
        add(`contended [${vname}]`, `wait p99 vs ${rl}`, '<= 0.25x', p99, p99 <= 0.25)
        add(`contended [${vname}]`, `handoff gap to another process p50 vs ${rl}`, '<= 0.5x', gap, gap <= 0.5)
      }
      add(`contended [${vname}]`, 'fairness (fewest/most acquisitions per process)', '>= 0.8', ml.fairness, ml.fairness >= 0.8)
      add(`contended [${vname}]`, 'overlapping holds (all rounds)', '0', ml.overlaps, ml.overlaps === 0)
    }
  }
  if (r.serializer) {
    for (const [work, w] of Object.entries(r.serializer.works)) {
      const label = work === 'cpu' ? 'CPU-bound' : 'sleep-like'
      const c = w.ratios['conflicts: serializer / optimistic']
      add(`serializer [${label}]`, 'conflicts: serializer / optimistic', '<= 0.01', c, c <= 0.01)
      const tt = w.ratios['total time: serializer / optimistic']
      const limit = work === 'cpu' ? 0.45 : 1.0
      add(`serializer [${label}]`, 'total time: serializer / optimistic', `<= ${limit}x`, tt, tt <= limit)
      const ok = w.summary.optimistic.allCorrect && w.summary.serializer.allCorrect
      add(`serializer [${label}]`, 'final counter == updates (every run)', 'all', ok ? 'all' : 'NOT ALL', ok)
    }
  }
  if (r.scale) {
    add('scale', 'CPU of 10k renewing locks, % of one core', '< 5%', r.scale.cpuPercent, r.scale.cpuPercent < 5)
    add('scale', 'heap per lock, bytes', '< 2048', r.scale.heapBytesPerLock, r.scale.heapBytesPerLock < 2048)
    add('scale', 'no lock lost while renewing', '0', r.scale.lost, r.scale.lost === 0)
  }
  return t
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  ensureDependencies()
  const library = await snapshotLibrary()
  const { runThroughput, renderThroughput } = await import('./scenarios/throughput.mjs')
  const { runContended, renderContended } = await import('./scenarios/contended.mjs')
  const { runSerializer, renderSerializer } = await import('./scenarios/serializer.mjs')
  const { runScale, renderScale } = await import('./scenarios/scale.mjs')
  const { WorkerPool } = await import('./lib/pool.mjs')
  const { REDIS_SETTINGS } = await import('./lib/impls.mjs')

  const started = Date.now()
  const meta = { date: new Date().toISOString(), quick: opts.quick, scenarios: opts.only, library, machine: machine(), redisSettings: REDIS_SETTINGS }
  log(`machine: ${meta.machine.nproc} CPU (${meta.machine.cpuModel}), Node ${meta.machine.node}, load ${meta.machine.loadAverage.join(' ')}`)
  const needsRedis = opts.only.some((s) => s !== 'serializer' && s !== 'scale')
  const mc = await startMemcached(log)
  const redis = needsRedis ? await startRedis(log) : null
  const ctx = { quick: opts.quick, log, memcached: mc.address, redisPort: redis?.port }
  const results = {}
  let pool = null
  try {
    for (const s of opts.only) {
      const t0 = Date.now()
      log(`scenario ${s}`)
      if (s === 'sequential') results[s] = await runThroughput(ctx, { name: 'sequential', loops: 1 })
      else if (s === 'concurrent64') results[s] = await runThroughput(ctx, { name: 'concurrent64', loops: 64 })
      else {
        if ((s === 'contended' || s === 'serializer') && !pool) pool = await WorkerPool.start(8, [mc.address, String(redis?.port ?? 0)])
        if (s === 'contended') results[s] = await runContended(ctx, pool)
        else if (s === 'serializer') results[s] = await runSerializer(ctx, pool)
        else if (s === 'scale') results[s] = await runScale(ctx)
      }
      results[s].elapsedMs = Date.now() - t0
    }
  } finally {
    await pool?.stop()
    await stopAll()
  }
  meta.elapsedMs = Date.now() - started
  const checks = targets(results)
  const doc = JSON.stringify({ meta, results, targets: checks }, null, 2) + '\n'
  if (opts.save) {
    mkdirSync(path.dirname(path.resolve(opts.save)), { recursive: true })
    writeFileSync(opts.save, doc)
    log(`results saved to ${opts.save}`)
  }
  if (opts.json) {
    process.stdout.write(doc)
    return checks
  }
  const m = meta.machine
  const out = [
    `memcached-lock benchmarks, ${meta.date}${opts.quick ? ' (--quick)' : ''}`,
    `${m.nproc} CPU ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, memcached ${m.memcached}, redis ${m.redis}, load at start ${m.loadAverage.join(' ')}`,
    `library: dist/esm built from ${meta.library}`,
    '',
  ]
  const titles = {
    sequential: 'sequential: uncontended acquire+release, one loop',
    concurrent64: 'concurrent64: 64 concurrent loops on distinct keys, one process',
    contended: 'contended: 8 processes, one key',
    serializer: 'serializer: 8 writers, one object, CAS read-modify-write',
    scale: 'scale: 10k locks held with autoRenew in one process',
  }
  for (const s of opts.only) {
    const r = results[s]
    const body =
      s === 'sequential' || s === 'concurrent64'
        ? renderThroughput(r)
        : s === 'contended'
          ? renderContended(r)
          : s === 'serializer'
            ? renderSerializer(r)
            : renderScale(r)
    out.push(`== ${titles[s]} (${Math.round(r.elapsedMs / 1000)} s)`, body, '')
  }
  const { table } = await import('./lib/stats.mjs')
  out.push(
    '== targets (issue 8; serializer: issue 4)',
    table(
      ['scenario', 'check', 'target', 'measured', 'met'],
      checks.map((c) => [c.scenario, c.name, c.target, String(c.measured), c.met ? 'met' : 'NOT MET']),
    ),
    '',
    `total ${Math.round(meta.elapsedMs / 1000)} s`,
  )
  process.stdout.write(out.join('\n') + '\n')
  return checks
}

main().then(
  () => process.exit(0),
  async (err) => {
    console.error(`bench failed: ${err?.stack ?? err}`)
    await stopAll(500)
    process.exit(1)
  },
)
