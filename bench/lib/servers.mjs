// Starts the benchmark's own memcached and redis-server on free loopback ports and stops them
// by PID (never by name): at the end, on error, and on SIGINT/SIGTERM.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import net from 'node:net'

/** Every child process this benchmark started, by PID, so one exit hook can stop them all. */
const children = new Map()
let hooked = false

/** Registers a child process to be stopped when the benchmark ends, however it ends. */
export function track(child, name) {
  children.set(child.pid, { child, name })
  child.once('exit', () => children.delete(child.pid))
  hookExit()
}

/** Stops every tracked child by its PID (SIGTERM, then SIGKILL after `graceMs`). */
export async function stopAll(graceMs = 2000) {
  const list = [...children.values()]
  await Promise.all(list.map(({ child }) => stopChild(child, graceMs)))
}

function stopChild(child, graceMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const kill = setTimeout(() => {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }, graceMs)
    child.once('exit', () => {
      clearTimeout(kill)
      resolve()
    })
    try {
      process.kill(child.pid, 'SIGTERM')
    } catch {
      clearTimeout(kill)
      resolve()
    }
  })
}

function killAllSync() {
  for (const { child } of children.values()) {
    try {
      process.kill(child.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  children.clear()
}

function hookExit() {
  if (hooked) return
  hooked = true
  // 'exit' handlers must be synchronous: a last resort if the orderly stop did not run
  process.on('exit', killAllSync)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping servers and workers\n`)
      stopAll(500).finally(() => process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 })[sig]))
    })
  }
}

/** A port the kernel just handed out on 127.0.0.1 (free at that moment). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(`${dir}/${cmd}`)) return `${dir}/${cmd}`
  }
  return null
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

function isDebian() {
  try {
    return /debian|ubuntu/i.test(readFileSync('/etc/os-release', 'utf8'))
  } catch {
    return false
  }
}

/** Finds `cmd` on PATH; as root on Debian/Ubuntu, installs `pkg` with apt-get when missing. */
export function ensureBinary(cmd, pkg, log) {
  let path = which(cmd)
  if (path) return path
  if (isRoot && isDebian()) {
    log(`${cmd} not found: apt-get install -y ${pkg}`)
    // keep the package from starting its own service: we start ours on our own ports
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', RUNLEVEL: '1' }
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 2, 2], env })
    spawnSync('apt-get', ['install', '-y', pkg], { stdio: ['ignore', 2, 2], env })
    path = which(cmd)
  }
  if (!path) throw new Error(`${cmd} is not on PATH; install it (Debian: apt-get install -y ${pkg})`)
  return path
}

/** Sends `probe` until the server answers with a line matching `expect`, or the deadline passes. */
async function waitUntilAnswering(port, probe, expect, child, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  let lastError = null
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server on port ${port} exited with code ${child.exitCode}`)
    try {
      const line = await new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1')
        let buf = ''
        const t = setTimeout(() => {
          s.destroy()
          reject(new Error('no answer'))
        }, 500)
        s.on('connect', () => s.write(probe))
        s.on('data', (d) => {
          buf += d.toString('latin1')
          const i = buf.indexOf('\r\n')
          if (i >= 0) {
            clearTimeout(t)
            s.destroy()
            resolve(buf.slice(0, i))
          }
        })
        s.on('error', (e) => {
          clearTimeout(t)
          reject(e)
        })
      })
      if (expect.test(line)) return line
      lastError = new Error(`unexpected answer ${JSON.stringify(line)}`)
    } catch (e) {
      lastError = e
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`server on port ${port} did not answer in ${timeoutMs} ms: ${lastError?.message}`)
}

async function startServer(name, bin, argsFor, probe, expect, log) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const args = argsFor(port)
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    track(child, name)
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr = (stderr + d.toString()).slice(-2000)
    })
    try {
      const banner = await waitUntilAnswering(port, probe, expect, child)
      log(`${name} pid ${child.pid} on 127.0.0.1:${port} (${bin} ${args.join(' ')})`)
      return { name, pid: child.pid, port, address: `127.0.0.1:${port}`, banner, child }
    } catch (e) {
      await stopChild(child, 500)
      // another process may have taken the port between our probe and the server's bind
      if (attempt >= 3) throw new Error(`${name} did not start: ${e.message}\n${stderr}`)
    }
  }
}

/** memcached with evictions off (`-M`) on a free port. */
export function startMemcached(log = () => {}) {
  const bin = ensureBinary('memcached', 'memcached', log)
  return startServer(
    'memcached',
    bin,
    (port) => ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-M', ...(isRoot ? ['-u', 'memcache'] : [])],
    'version\r\n',
    /^VERSION /,
    log,
  )
}

/** redis-server without persistence on a free port. */
export function startRedis(log = () => {}) {
  const bin = ensureBinary('redis-server', 'redis-server', log)
  return startServer(
    'redis',
    bin,
    (port) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', ''],
    'PING\r\n',
    /^\+PONG/,
    log,
  )
}

/** `memcached -V` and `redis-server --version`, for the report. */
export function serverVersions() {
  const run = (cmd, args) => {
    const bin = which(cmd)
    if (!bin) return null
    const r = spawnSync(bin, args, { encoding: 'utf8' })
    return (r.stdout || r.stderr || '').trim()
  }
  const mc = run('memcached', ['-V'])
  const rd = run('redis-server', ['--version'])
  return {
    memcached: mc?.replace(/^memcached\s+/, '') ?? null,
    redis: /v=(\S+)/.exec(rd ?? '')?.[1] ?? rd,
  }
}
