/**
 * Network faults between clients and memcached, through one TcpProxy per worker process:
 * latency spikes longer than the TTL, a black-holed server (traffic dropped, or held and
 * delivered late), and connections reset in the middle of pipelined requests and replies.
 * Requests must time out rather than hang, leases whose renewals cannot get through must be
 * signalled lost, and no two valid holders may overlap.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemcachedServer } from '../helpers/memcached-server.js';
import type { TcpProxy } from '../helpers/tcp-proxy.js';
import { assertSafe, FaultRun, lostFor, scenarioSeeds, sleep, total } from './harness.js';

const FILE = 'test/faults/network.test.ts';
let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server?.stop();
});

/** One proxy at random, or all of them (a third of the time). */
function victims(run: FaultRun): { proxies: TcpProxy[]; label: string } {
  if (run.random() < 1 / 3) return { proxies: run.proxies, label: 'all workers' };
  const i = run.between(0, run.proxies.length - 1);
  return { proxies: [run.proxies[i]!], label: `worker w${i + 1}` };
}

describe('faults - network', () => {
  for (const [variant, requestTimeoutMs] of [
    ['slow replies', 5_000],
    ['request timeouts', 500],
  ] as const) {
    for (const seed of scenarioSeeds(2)) {
      test(`network - latency spikes longer than the TTL (${variant}, requestTimeoutMs ${requestTimeoutMs}): no overlap, nothing hangs (seed ${seed})`, async () => {
        const run = await FaultRun.start({
          scenario: 'latency',
          file: FILE,
          seed,
          server,
          workers: 3,
          proxied: true,
          worker: { durationMs: 7_000, requestTimeoutMs, connectTimeoutMs: requestTimeoutMs },
        });
        run.go();
        await sleep(run.between(600, 1200));
        for (let i = 0; i < 2; i++) {
          const v = victims(run);
          const oneWay = run.between(600, 1500);
          const ms = run.between(1200, 2000);
          run.fault(`latency ${oneWay} ms each way (RTT ${2 * oneWay} ms, TTL 1000 ms) for ${ms} ms on ${v.label}`);
          for (const p of v.proxies) p.setLatency(oneWay);
          await sleep(ms);
          for (const p of v.proxies) p.setLatency(0);
          run.fault(`latency lifted on ${v.label}`);
          await sleep(run.between(300, 800));
        }
        const o = await run.finish({ timeoutMs: 40_000 });
        assertSafe(o);
        assert.ok(o.result.stats.leases > 0);
      });
    }
  }

  for (const mode of ['drop', 'hold'] as const) {
    for (const seed of scenarioSeeds(2)) {
      test(`network - black-holed server (${mode}): requests time out, leases lost and signalled, nothing hangs (seed ${seed})`, async () => {
        const run = await FaultRun.start({
          scenario: `blackhole-${mode}`,
          file: FILE,
          seed,
          server,
          workers: 3,
          proxied: true,
          worker: { durationMs: 7_000 },
          perWorker: (i) => (i === 0 ? { holdMs: [300, 900], renew: 'auto', overrunChance: 0 } : {}),
        });
        run.go();
        await sleep(run.between(600, 1200));
        for (let i = 0; i < 2; i++) {
          // the first black hole always takes the long holder, so a held lease is caught in it
          const v = i === 0 ? { proxies: [run.proxies[0]!], label: 'worker w1' } : victims(run);
          const ms = run.between(1500, 2500);
          run.fault(`black hole (${mode}) for ${ms} ms on ${v.label}`);
          for (const p of v.proxies) p.blackHole(true, mode);
          await sleep(ms);
          for (const p of v.proxies) p.blackHole(false);
          run.fault(`black hole lifted on ${v.label}`);
          await sleep(run.between(300, 800));
        }
        const o = await run.finish({ timeoutMs: 40_000 });
        assertSafe(o);
        const errors = total(o, (s) => Object.values(s.acquireErrors).reduce((a, b) => a + b, 0) + s.renewalErrors);
        assert.ok(errors + lostFor(o, 'disconnected', 'renewal-failed', 'expired', 'taken') > 0, 'the black hole was felt');
      });
    }
  }

  for (const seed of scenarioSeeds(3)) {
    test(`network - connections reset mid-pipeline (cut after N bytes, cut all): no overlap, nothing hangs (seed ${seed})`, async () => {
      const run = await FaultRun.start({
        scenario: 'resets',
        file: FILE,
        seed,
        server,
        workers: 3,
        proxied: true,
        worker: { durationMs: 6_000, concurrency: 4 },
      });
      run.go();
      await sleep(run.between(300, 700));
      const until = performance.now() + 4_000;
      while (performance.now() < until) {
        const i = run.between(0, run.proxies.length - 1);
        const p = run.proxies[i]!;
        if (run.random() < 0.2) {
          run.fault(`cut all connections of w${i + 1}`);
          p.cutAll();
        } else {
          const n = run.between(1, 300);
          const dir = run.random() < 0.5 ? 'toClient' : 'toServer';
          run.fault(`cut w${i + 1} after ${n} more bytes ${dir}`);
          p.cutAfterBytes(n, dir);
        }
        await sleep(run.between(100, 400));
      }
      const o = await run.finish({ timeoutMs: 40_000 });
      assertSafe(o);
      assert.ok(o.result.stats.leases > 0);
    });
  }
});
