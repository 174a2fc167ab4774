// The implementations under test, each behind the same small interface, so a scenario can run
// them interleaved. Every implementation gets its own connection(s).
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import Redlock from 'redlock'
import { Mutex as SemaphoreMutex } from 'redis-semaphore'

// The library as built in dist/esm; run.mjs points every process at one frozen copy of it, so a
// rebuild during the run cannot mix two builds (or find dist/ half written).
const { Locks } = await import(process.env.MEMCACHED_LOCK_BENCH_LIB ?? new URL('../../dist/esm/index.js', import.meta.url).href)
import { casOf, RawMeta } from './raw-meta.mjs'

/** Lease length for every implementation in the throughput scenarios. */
export const CYCLE_TTL_MS = 30_000

/** Settings used for the Redis locks; printed in the report so readers can judge them. */
export const REDIS_SETTINGS = {
  redlockUncontended: { retryCount: 0 },
  // redlock's own defaults (retryDelay 200 ms, retryJitter 100 ms, driftFactor 0.01), with unbounded
  // retries so that no waiter gives up within the measured window
  redlockDefaults: { retryCount: -1, retryDelay: 200, retryJitter: 100 },
  // what users tune it to when they need short waits
  redlockFast: { retryCount: -1, retryDelay: 10, retryJitter: 5 },
  // redis-semaphore's defaults (retryInterval 10 ms) with a long acquire timeout
  semaphore: { retryInterval: 10, acquireTimeout: 120_000 },
}

export async function redisClient(port) {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 })
  r.on('error', () => {})
  await r.connect()
  return r
}

export function newLocks(memcached) {
  return new Locks({ servers: memcached, prefix: 'bench:', onWarning: () => {} })
}

/**
 * Throughput implementations: `prepare(keys)` returns one async `cycle(i)` per loop, which
 * acquires and releases the lock `keys[i]` once, uncontended.
 */
export const CYCLERS = {
  'raw floor': async ({ memcached }) => {
    const raw = await RawMeta.connect(memcached)
    return {
      prepare(keys) {
        return keys.map((k) => {
          const token = randomBytes(16).toString('hex')
          const set = `ms ${k} 32 T30 ME c\r\n${token}\r\n`
          return async () => {
            const r = await raw.request(set)
            if (r.line[0] !== 'H') throw new Error(`raw acquire of ${k}: ${r.line}`)
            const d = await raw.request(`md ${k} C${casOf(r.line)}\r\n`)
            if (d.line !== 'HD') throw new Error(`raw release of ${k}: ${d.line}`)
          }
        })
      },
      close: async () => raw.close(),
    }
  },
  'memcached-lock': async ({ memcached }) => {
    const locks = newLocks(memcached)
    return {
      prepare(keys) {
        return keys.map((k) => {
          const m = locks.mutex(k, { ttlMs: CYCLE_TTL_MS })
          return async () => {
            const h = await m.acquire()
            if (!(await h.release())) throw new Error(`memcached-lock: release of ${k} found the lock gone`)
          }
        })
      },
      close: () => locks.close(),
    }
  },
  redlock: async ({ redisPort }) => {
    const redis = await redisClient(redisPort)
    const redlock = new Redlock([redis], REDIS_SETTINGS.redlockUncontended)
    return {
      prepare(keys) {
        return keys.map((k) => async () => {
          const lock = await redlock.acquire([k], CYCLE_TTL_MS)
          await lock.release()
        })
      },
      close: async () => redis.quit(),
    }
  },
  'redis-semaphore': async ({ redisPort }) => {
    const redis = await redisClient(redisPort)
    return {
      prepare(keys) {
        return keys.map((k) => async () => {
          const m = new SemaphoreMutex(redis, k, { lockTimeout: CYCLE_TTL_MS, ...REDIS_SETTINGS.semaphore })
          await m.acquire()
          await m.release()
        })
      },
      close: async () => redis.quit(),
    }
  },
}

/**
 * Contended implementations (used inside worker processes): `acquire(key)` waits for the lock
 * and returns a release function.
 */
export const CONTENDERS = {
  'memcached-lock': async ({ memcached }) => {
    const locks = newLocks(memcached)
    return {
      async acquire(key) {
        const h = await locks.mutex(key).acquire({ waitMs: 120_000, ttlMs: 10_000 })
        return () => h.release()
      },
      close: () => locks.close(),
    }
  },
  'redlock (200 ms retry)': async ({ redisPort }) => redlockContender(redisPort, REDIS_SETTINGS.redlockDefaults),
  'redlock (10 ms retry)': async ({ redisPort }) => redlockContender(redisPort, REDIS_SETTINGS.redlockFast),
  'redis-semaphore': async ({ redisPort }) => {
    const redis = await redisClient(redisPort)
    return {
      async acquire(key) {
        const m = new SemaphoreMutex(redis, key, { lockTimeout: 10_000, ...REDIS_SETTINGS.semaphore })
        await m.acquire()
        return () => m.release()
      },
      close: async () => redis.quit(),
    }
  },
}

async function redlockContender(redisPort, settings) {
  const redis = await redisClient(redisPort)
  const redlock = new Redlock([redis], settings)
  return {
    async acquire(key) {
      const lock = await redlock.acquire([key], 10_000)
      return () => lock.release()
    },
    close: async () => redis.quit(),
  }
}
