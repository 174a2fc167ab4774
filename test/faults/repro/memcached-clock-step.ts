/**
 * Reproduction (about 1-2 minutes): memcached's clock can advance by 2 seconds in one tick, so
 * an item stored with TTL T can expire after less than T-1 seconds.
 *
 * memcached 1.6 keeps `current_time = floor(CLOCK_MONOTONIC seconds) - start`, refreshed by a
 * timer re-armed for 1 s after each tick: ticks drift ~1 ms later every second, and when the
 * tick phase crosses a second boundary one tick moves the clock by 2. This script restarts
 * memcached until a boot's tick phase is just below a boundary, then stores a T2 item every
 * 20 ms until the phase wraps, and reports the items that lived less than 1 s.
 *
 *   node --import tsx test/faults/repro/memcached-clock-step.ts
 *
 * Why it matters: the library stored a lease of ttlMs with T = ceil(ttlMs/1000) + 1, assuming
 * an item lives at least T-1 s; the fault suite saw two holders of one lock at once on a
 * healthy server. src/store/ttl.ts now adds 2.
 */
import { Connection } from '../../../src/index.js';
import { MemcachedServer } from '../../helpers/memcached-server.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** CLOCK_MONOTONIC in seconds (process.hrtime is that clock on Linux). */
const mono = (): number => Number(process.hrtime.bigint()) / 1e9;
const key = (wire: string) => ({ wire, base64: false });

async function nextTick(c: Connection): Promise<number> {
  const first = Number((await c.stats()).uptime);
  for (;;) {
    const at = mono();
    if (Number((await c.stats()).uptime) !== first) return at;
  }
}

const server = await MemcachedServer.start({ args: ['-M'] });
let c = new Connection({ host: server.host, port: server.port });
try {
  // a boot whose ticks fall just before a second boundary wraps within a minute
  for (let boot = 0; boot < 400; boot++) {
    await c.connect();
    const phase = (await nextTick(c)) % 1;
    console.log(`boot ${boot} (pid ${server.pid}): clock ticks at monotonic phase ${phase.toFixed(4)}`);
    if (phase > 0.955 && phase < 0.99) break;
    await c.close();
    await server.kill();
    await server.restart();
    c = new Connection({ host: server.host, port: server.port });
  }

  const live = new Map<string, number>();
  let n = 0;
  let early = 0;
  let steppedAt = 0;
  let shortest = Infinity;
  let prevUptime = Number((await c.stats()).uptime);
  const t0 = mono();
  while (mono() - t0 < 70 && !(steppedAt && mono() - steppedAt > 2.5)) {
    const k = `w${n++}`;
    live.set(k, mono());
    await c.metaSet(key(k), 'x', ['T2']);
    const uptime = Number((await c.stats()).uptime);
    if (uptime - prevUptime >= 2) {
      steppedAt = mono();
      console.log(`tick: uptime ${prevUptime} -> ${uptime} in one step, at monotonic phase ${(steppedAt % 1).toFixed(4)}`);
    }
    prevUptime = uptime;
    for (const [k2, at] of [...live]) {
      if ((await c.metaGet(key(k2), [])).status === 'EN') {
        const lifeMs = (mono() - at) * 1000;
        live.delete(k2);
        shortest = Math.min(shortest, lifeMs);
        if (lifeMs < 1000 && ++early <= 5) console.log(`item ${k2}, stored with T2, was gone after ${lifeMs.toFixed(0)} ms`);
      }
    }
    await sleep(20);
  }
  console.log(
    `${n} T2 items; ${early} lived less than 1 s (shortest ${shortest.toFixed(0)} ms); ` +
      (steppedAt ? 'the clock stepped by 2' : 'no double step within 70 s (run again)'),
  );
} finally {
  await c.close();
  await server.stop();
}
