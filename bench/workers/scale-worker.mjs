// `scale`: one process holds N locks with autoRenew and does nothing else. Run with --expose-gc.
// Usage: node --expose-gc scale-worker.mjs <memcached host:port> <locks> <ttlMs> <windowMs>
// Sends one result object to the parent over IPC (or prints it when run by hand).
import net from 'node:net'
import { newLocks } from '../lib/impls.mjs'
import { RawMeta } from '../lib/raw-meta.mjs'
import { sleep } from '../lib/stats.mjs'

const [memcached, nArg, ttlArg, windowArg] = process.argv.slice(2)
const N = Number(nArg)
const ttlMs = Number(ttlArg)
const windowMs = Number(windowArg)
if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc')

const heap = () => {
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}

/** `stats` as a name -> value record. */
async function serverStats(client) {
  const lines = await client.statsLines()
  return Object.fromEntries(lines.map((l) => l.split(' ').slice(1, 3)))
}

// a tiny `stats` reader on its own socket (RawMeta only parses meta replies)
async function statsClient(address) {
  const [host, port] = address.split(':')
  const sock = net.connect(Number(port), host)
  await new Promise((resolve, reject) => {
    sock.once('connect', resolve)
    sock.once('error', reject)
  })
  return {
    statsLines: () =>
      new Promise((resolve) => {
        let buf = ''
        const onData = (d) => {
          buf += d.toString('latin1')
          if (buf.endsWith('END\r\n')) {
            sock.off('data', onData)
            resolve(buf.split('\r\n').filter((l) => l.startsWith('STAT ')))
          }
        }
        sock.on('data', onData)
        sock.write('stats\r\n')
      }),
    close: () => sock.destroy(),
  }
}

const locks = newLocks(memcached)
let lost = 0
let renewalErrors = 0
locks.on('lost', () => lost++)
locks.on('renewal-error', () => renewalErrors++)
const stats = await statsClient(memcached)
const probe = await RawMeta.connect(memcached)

// warm the code paths and the connection before the baseline
const warm = await locks.mutex('scale:warm').acquire({ ttlMs, autoRenew: true })
await warm.release()

const heapBefore = heap()
const t0 = performance.now()
const handles = new Array(N)
const BATCH = 500
for (let i = 0; i < N; i += BATCH) {
  await Promise.all(
    Array.from({ length: Math.min(BATCH, N - i) }, async (_, j) => {
      handles[i + j] = await locks.mutex(`scale:${i + j}`).acquire({ ttlMs, autoRenew: true, waitMs: 0 })
    }),
  )
}
const acquireMs = performance.now() - t0
const heapAfter = heap()

// measure a whole number of renewal periods so the count is not skewed by where bursts fall
const s0 = await serverStats(stats)
const cpu0 = process.cpuUsage()
const w0 = performance.now()
await sleep(windowMs)
const cpu = process.cpuUsage(cpu0)
const elapsedMs = performance.now() - w0
const s1 = await serverStats(stats)
const heapEnd = heap()

const sets = Number(s1.cmd_set) - Number(s0.cmd_set)
const casHits = Number(s1.cas_hits) - Number(s0.cas_hits)
const held = handles.filter((h) => h.isHeld).length

// a few locks must really still be on the server with our tokens
let onServer = 0
for (const i of [0, Math.floor(N / 2), N - 1]) {
  const r = await probe.request(`mg bench:scale:${i} t\r\n`)
  if (r.line.startsWith('HD')) onServer++
}

const t1 = performance.now()
await Promise.all(handles.map((h) => h.release()))
const releaseMs = performance.now() - t1

const result = {
  locks: N,
  ttlMs,
  windowMs: Math.round(elapsedMs),
  acquireMs: Math.round(acquireMs),
  releaseMs: Math.round(releaseMs),
  renewalsPerSecond: (casHits / elapsedMs) * 1000,
  setsPerSecond: (sets / elapsedMs) * 1000,
  expectedRenewalsPerSecond: (N / (ttlMs * 0.34)) * 1000,
  cpuPercent: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100,
  cpuUserMs: cpu.user / 1000,
  cpuSystemMs: cpu.system / 1000,
  heapBytesPerLock: (heapAfter - heapBefore) / N,
  heapBytesPerLockAfterWindow: (heapEnd - heapBefore) / N,
  heapBefore,
  heapAfter,
  stillHeld: held,
  sampledOnServer: `${onServer}/3`,
  lost,
  renewalErrors,
}
await locks.close()
stats.close()
probe.close()
if (process.send) process.send(result)
else console.log(JSON.stringify(result, null, 2))
process.exit(0)
