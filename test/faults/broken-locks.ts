/**
 * Deliberately broken locks, written with raw meta commands against a real memcached, to prove
 * that the safety checker can fail. Each is a classic mistake:
 *
 * - `get-then-set`: acquire reads the key and, when it is absent, writes it with a plain set
 *   (no `ME` add mode, no owner check): two clients that read "absent" both believe they won.
 * - `blind-delete`: acquire is a correct add, but release deletes the key without checking
 *   who owns it (no CAS, no token): a holder that overran its TTL deletes its successor's lock.
 * - `local-fence`: a correct lock whose fencing tokens come from a per-client counter instead
 *   of the server: tokens do not follow grant order across clients.
 *
 * `runBrokenLock` drives several clients (one connection each) on one key and records the
 * history exactly as the real workers do.
 */
import { randomBytes } from 'node:crypto';

import { Connection } from '../../src/index.js';
import { GuardedResource } from './guarded-resource.js';
import { mulberry32 } from './random.js';
import { MemoryRecorder, wallNow, type HistoryEvent } from './recorder.js';

export type BrokenKind = 'get-then-set' | 'blind-delete' | 'local-fence';

export interface BrokenRunOptions {
  kind: BrokenKind;
  address: { host: string; port: number };
  /** Concurrent clients. @default 6 */
  clients?: number;
  durationMs?: number;
  ttlMs?: number;
  /** Hold time range, ms. @default [1, 8] */
  holdMs?: [number, number];
  /** Chance that a holder overruns its TTL before releasing. @default 0 (0.3 for blind-delete) */
  overrunChance?: number;
  /** Resource that accepts every write (no fence check). @default false */
  naiveResource?: boolean;
  seed?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs clients of a broken lock on one key and returns the recorded history. */
export async function runBrokenLock(o: BrokenRunOptions): Promise<HistoryEvent[]> {
  const rec = new MemoryRecorder();
  const resource = new GuardedResource(rec, { checkFences: !o.naiveResource });
  const random = mulberry32(o.seed ?? 1);
  const key = { wire: `broken:${o.kind}:${randomBytes(4).toString('hex')}`, base64: false };
  // a safe TTL margin (what these locks get wrong is something else); blind-delete needs its
  // overrunning holders to outlive the item, so its TTL is the tightest that is still safe
  const ttlS = Math.ceil((o.ttlMs ?? 1000) / 1000) + (o.kind === 'blind-delete' ? 1 : 2);
  const [lo, hi] = o.holdMs ?? [1, 8];
  const overrunChance = o.overrunChance ?? (o.kind === 'blind-delete' ? 0.3 : 0);
  const deadline = performance.now() + (o.durationMs ?? 1500);
  const conns = Array.from({ length: o.clients ?? 6 }, () => new Connection(o.address, { requestTimeoutMs: 2000 }));
  await Promise.all(conns.map((c) => c.connect()));

  const client = async (conn: Connection, id: number): Promise<void> => {
    let n = 0;
    let localFence = 0n;
    while (performance.now() < deadline) {
      const token = randomBytes(8).toString('hex');
      const start = performance.now();
      let cas: string | null = null;
      if (o.kind === 'get-then-set') {
        const got = await conn.metaGet(key, ['v']);
        if (got.status === 'EN') {
          const set = await conn.metaSet(key, token, ['T' + ttlS, 'c']);
          if (set.status === 'HD') cas = set.flags.c ?? '0';
        }
      } else {
        const add = await conn.metaSet(key, token, ['T' + ttlS, 'ME', 'c']);
        if (add.status === 'HD') cas = add.flags.c ?? '0';
      }
      if (cas === null) {
        await sleep(random() * 2);
        continue;
      }
      n++;
      const holder = `b${id}:${n}`;
      const fence = o.kind === 'local-fence' ? ++localFence : BigInt(cas);
      const t = wallNow();
      // the validity such a lock would claim: its TTL, counted from before the request
      const validUntil = t + Math.max(0, (o.ttlMs ?? 1000) - 5 - (performance.now() - start));
      rec.record({ type: 'acquire', key: key.wire, holder, proc: `b${id}`, fence: fence.toString(), t, validUntil });
      const overrun = random() < overrunChance;
      const holdFor = overrun ? ttlS * 1000 + 200 : lo + random() * (hi - lo);
      const holdUntil = performance.now() + holdFor;
      let wrote = false;
      while (performance.now() < holdUntil) {
        // write while the lock believes it is valid
        if (!wrote || random() < 0.3) {
          if (wallNow() < validUntil) resource.write(key.wire, holder, fence);
          wrote = true;
        }
        await sleep(Math.min(2, holdUntil - performance.now()));
      }
      const tEnd = wallNow();
      if (tEnd >= validUntil) rec.record({ type: 'lost', key: key.wire, holder, t: validUntil, reason: 'expired' });
      const del = await conn.metaDelete(key, o.kind === 'blind-delete' || o.kind === 'get-then-set' ? [] : ['C' + cas]);
      rec.record({ type: 'release', key: key.wire, holder, t: tEnd, deleted: del.status === 'HD' });
    }
  };
  try {
    await Promise.all(conns.map((c, i) => client(c, i + 1)));
  } finally {
    await Promise.all(conns.map((c) => c.close()));
  }
  return rec.events;
}
