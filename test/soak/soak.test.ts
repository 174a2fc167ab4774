/**
 * Soak (opt-in: `npm run test:soak`, `SOAK_SECONDS`, default 100; the test runner bounds a file
 * to 120 s, so for longer soaks raise it: `SOAK_SECONDS=600 npm run test:soak --
 * --test-timeout=900000`): one process runs a long
 * loop of acquire / renew / release on a few contended keys against a real memcached (short
 * TTLs so automatic renewal runs constantly, waits that time out, scoped locks, a reentrant
 * lock), sampling the heap (after a forced GC) and the count of active handles every few
 * seconds. Leaks show up as a heap that keeps growing after warm-up, or handles that pile up;
 * both must stay flat, and the handles must come back to the baseline after close.
 */
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { after, before, describe, test } from 'node:test';

import { LockTimeoutError, Locks } from '../../src/index.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { sleep } from '../helpers/util.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 100);
const SAMPLE_EVERY_MS = Math.min(5_000, Math.max(1_000, (SECONDS * 1000) / 30));
/** Heap growth allowed between the end of warm-up and the end of the run. */
const MAX_HEAP_GROWTH_MB = 8;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let server: MemcachedServer;
before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server?.stop();
});

interface Sample {
  atS: number;
  heapMb: number;
  handles: number;
  ops: number;
}

function sample(t0: number, ops: number): Sample {
  gc();
  return {
    atS: (performance.now() - t0) / 1000,
    heapMb: process.memoryUsage().heapUsed / 1048576,
    handles: process.getActiveResourcesInfo().length,
    ops,
  };
}

describe('soak', () => {
  test(`soak - ${SECONDS} s of acquire/renew/release: heap and handles stay flat`, { timeout: (SECONDS + 120) * 1000 }, async () => {
    gc();
    const baselineHandles = process.getActiveResourcesInfo().length;
    const locks = new Locks({ servers: server.address, prefix: 'soak:' });
    const errors: string[] = [];
    locks.on('renewal-error', (_k: string, err: Error) => errors.push(`renewal-error: ${err.message}`));
    const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
    let ops = 0;
    let lost = 0;
    let timeouts = 0;
    let running = true;
    const t0 = performance.now();

    const loop = async (i: number): Promise<void> => {
      let n = 0;
      while (running) {
        const key = keys[(i * 7 + n++) % keys.length]!;
        try {
          switch (n % 10) {
            case 0: {
              // a hold long enough for automatic renewal to run
              await locks.withLock(key, () => sleep(1_200), { ttlMs: 1_000, waitMs: 5_000 });
              break;
            }
            case 1: {
              const h = await locks.mutex(key).acquire({ ttlMs: 2_000, waitMs: 5_000 });
              await h.extend();
              await h.extend(3_000);
              if (!(await h.release())) lost++;
              break;
            }
            case 2: {
              const h = await locks.mutex(key).tryAcquire({ ttlMs: 2_000 });
              if (h) await h.release();
              break;
            }
            case 3: {
              // a short wait that often times out: waiter bookkeeping must not leak
              try {
                const h = await locks.mutex(key).acquire({ ttlMs: 2_000, waitMs: 20 });
                await h.release();
              } catch (err) {
                if (!(err instanceof LockTimeoutError)) throw err;
                timeouts++;
              }
              break;
            }
            case 4:
              await locks.withReentrantLock(key, () => locks.withReentrantLock(key, () => sleep(5)), { ttlMs: 2_000, waitMs: 5_000 });
              break;
            default: {
              const h = await locks.mutex(key).acquire({ ttlMs: 5_000, waitMs: 5_000 });
              await h.release();
            }
          }
          ops++;
        } catch (err) {
          errors.push(`${(err as Error).name}: ${(err as Error).message}`);
          await sleep(50);
        }
      }
    };
    locks.on('lost', () => lost++);

    const loops = Array.from({ length: 8 }, (_, i) => loop(i));
    const samples: Sample[] = [];
    while (performance.now() - t0 < SECONDS * 1000) {
      await sleep(SAMPLE_EVERY_MS);
      samples.push(sample(t0, ops));
      const s = samples.at(-1)!;
      console.log(`[soak] +${s.atS.toFixed(0)} s: ${s.ops} ops, heap ${s.heapMb.toFixed(1)} MB, ${s.handles} active handles`);
    }
    running = false;
    await Promise.all(loops);
    await locks.close();
    await sleep(100);
    gc();
    const endHandles = process.getActiveResourcesInfo().length;

    const warm = samples.slice(Math.max(1, Math.floor(samples.length / 5)));
    const heapStart = Math.min(...warm.slice(0, 3).map((s) => s.heapMb));
    const heapEnd = warm.at(-1)!.heapMb;
    const heapMax = Math.max(...warm.map((s) => s.heapMb));
    const handles = warm.map((s) => s.handles);
    console.log(
      `[soak] ${SECONDS} s, ${ops} operations (${(ops / SECONDS).toFixed(0)}/s), ${timeouts} short waits timed out, ${lost} leases lost; ` +
        `heap after warm-up ${heapStart.toFixed(1)} -> ${heapEnd.toFixed(1)} MB (max ${heapMax.toFixed(1)}); ` +
        `handles ${Math.min(...handles)}-${Math.max(...handles)} while running, ${baselineHandles} before, ${endHandles} after close`,
    );
    assert.deepEqual(errors, [], 'no errors in the loop');
    assert.equal(lost, 0, 'no lease lost on a healthy server');
    assert.ok(ops > SECONDS * 20, `the loop made progress (${ops} operations)`);
    assert.ok(heapEnd - heapStart < MAX_HEAP_GROWTH_MB, `heap grew ${(heapEnd - heapStart).toFixed(1)} MB after warm-up`);
    assert.ok(Math.max(...handles) - Math.min(...handles) <= 8, `active handles stayed flat (${Math.min(...handles)}-${Math.max(...handles)})`);
    assert.ok(endHandles <= baselineHandles, `handles back to baseline after close (${endHandles} vs ${baselineHandles})`);
  });
});
