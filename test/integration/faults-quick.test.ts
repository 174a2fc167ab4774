/**
 * The quick part of the fault suite (the rest: `npm run test:faults`, docs/RELIABILITY.md):
 * the safety checker flags a deliberately broken lock on a real memcached, a run of three
 * worker processes through a memcached crash and restart gives a history with no violation,
 * and the races the suite found stay fixed (a release or a loss while a renewal is in flight).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Locks, LockLostError } from '../../src/index.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { eventually, uniqueKey } from '../helpers/util.js';
import { runBrokenLock } from '../faults/broken-locks.js';
import { checkHistory, summarize } from '../faults/checker.js';
import { assertSafe, FaultRun, scenarioSeeds, sleep } from '../faults/harness.js';

const FILE = 'test/integration/faults-quick.test.ts';
let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server?.stop();
});

describe('faults (quick)', () => {
  test('faults quick - the checker flags a lock without an owner check (get-then-set) as overlapping', async () => {
    const history = await runBrokenLock({ kind: 'get-then-set', address: { host: server.host, port: server.port }, durationMs: 600 });
    const r = checkHistory(history);
    assert.ok(r.counts.overlap > 0, summarize(r));
  });

  for (const seed of scenarioSeeds(1)) {
    test(`faults quick - memcached killed and restarted under 3 worker processes: no violation (seed ${seed})`, async () => {
      const run = await FaultRun.start({ scenario: 'quick-kill', file: FILE, seed, server, workers: 3, worker: { durationMs: 4_000 } });
      run.go();
      await sleep(run.between(1000, 1800));
      run.fault(`kill memcached (SIGKILL, pid ${server.pid})`);
      await server.kill();
      await sleep(run.between(100, 600));
      await server.restart();
      run.fault(`memcached back (pid ${server.pid})`);
      const o = await run.finish();
      assertSafe(o);
      assert.ok(o.result.stats.leases > 0);
    });
  }

  describe('renewal in flight (found by the fault suite)', () => {
    let proxy: TcpProxy;
    const opened: Locks[] = [];
    before(async () => {
      proxy = await TcpProxy.start({ host: server.host, port: server.port });
    });
    after(async () => {
      await Promise.all(opened.map((l) => l.close()));
      await proxy.close();
    });
    function open(servers: string, timeouts: { requestTimeoutMs?: number; connectTimeoutMs?: number } = {}): Locks {
      const locks = new Locks({ servers, prefix: 'fq:', pushWakeups: false, ...timeouts });
      opened.push(locks);
      return locks;
    }

    test('faults quick - a release the server did not hear is tried again in the background, owner-checked', async () => {
      const cut = open(proxy.address, { requestTimeoutMs: 300, connectTimeoutMs: 300 });
      const direct = open(server.address);
      const key = uniqueKey('release-retry');
      const later = uniqueKey('release-retry-later');
      await cut.inspect(key);
      const h = await cut.mutex(key).acquire({ ttlMs: 30_000 });
      const other = await cut.mutex(later).acquire({ ttlMs: 30_000 });
      proxy.blackHole(true); // 'drop': the delete never reaches the server
      let newHolder;
      try {
        await assert.rejects(h.release(), (err: unknown) => (err as { code?: string }).code === 'ERR_REQUEST_TIMEOUT');
        await assert.rejects(other.release());
        // meanwhile the second lease's key is taken over by another client (its lease would have
        // ended for real in a long outage): the retry must not delete the new holder's lock
        assert.equal(await direct.forceRelease(later), true);
        newHolder = await direct.mutex(later).acquire({ ttlMs: 30_000 });
        await sleep(400);
        assert.ok(await direct.inspect(key), 'still held while the server cannot hear the release');
      } finally {
        proxy.blackHole(false);
      }
      // the first lock is freed long before its 30 s TTL; the other client's lock is untouched
      await eventually(async () => assert.equal(await direct.inspect(key), null), 10_000);
      assert.equal((await direct.inspect(later))?.token, newHolder.lease?.token, 'the retry left the new holder alone');
      await newHolder.release();
    });

    test('faults quick - release() while an automatic renewal is in flight releases the lock, with no loss', async () => {
      const slow = open(proxy.address);
      const direct = open(server.address);
      const key = uniqueKey('renew-release');
      await slow.inspect(key);
      proxy.setLatency(150);
      try {
        const h = await slow.mutex(key).acquire({ ttlMs: 1_000, autoRenew: true });
        // the renewal leaves at ~340 ms (a third of the TTL) and its reply takes ~300 ms
        await sleep(420);
        assert.equal(await h.release(), true, 'the release deletes the lease the renewal just extended');
        assert.equal(h.lostError, null, 'no loss is reported');
        assert.equal(await direct.inspect(key), null, 'the lock is free at once, not after its TTL');
      } finally {
        proxy.setLatency(0);
      }
    });

    test('faults quick - a lease lost while its extension is in flight is still cleaned up', async () => {
      const slow = open(proxy.address);
      const direct = open(server.address);
      const key = uniqueKey('renew-lost');
      await slow.inspect(key);
      proxy.setLatency(150);
      try {
        const h = await slow.mutex(key).acquire({ ttlMs: 1_000 });
        await sleep(Math.max(0, h.remainingMs - 120));
        // still valid when sent; validity runs out before the reply comes back
        await assert.rejects(h.extend(), (err: unknown) => err instanceof LockLostError && err.reason === 'expired');
        proxy.setLatency(0);
        await sleep(400);
        assert.equal(await direct.inspect(key), null, 'the cleanup deleted the item the extension had renewed');
      } finally {
        proxy.setLatency(0);
      }
    });
  });
});
