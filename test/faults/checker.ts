/**
 * The safety checker: reads a lock history recorded across processes (./recorder.ts) and
 * reports every violation of four properties, in the spirit of Jepsen's and etcd's robustness
 * checkers:
 *
 * (a) `overlap`: no two leases of a key are valid at the same time, where a lease is valid
 *     from the moment its holder got it until the first of: its release (the end of the
 *     critical section), its loss signal, its holder's crash, and its validity as the library
 *     itself reported it (`remainingMs`, moved forward by each renewal). Renewals that come
 *     after validity ran out open a new valid segment; the gap between is not valid.
 * (b) `fence-order`: fencing tokens strictly increase in grant order, per key. Grant order is
 *     the order of acquisition times of the leases that were ever valid (a lease handed over
 *     already expired was never valid and is left out).
 * (c) `unsignalled-loss`: every lease that ended other than by a successful release was
 *     signalled lost (a `lost` event), or its release rejected (the caller was told), or its
 *     process crashed. A release that found the lease gone without any loss signal, or a lease
 *     that never ended, is a violation.
 * (d) `stale-write`: the guarded resource never accepted a write from a lease after it had
 *     accepted one from a lease granted later (by grant order, not by fence: fences that
 *     disagree with grant order are exactly what lets a stale write through).
 *
 * Plus `malformed` for histories that make no sense (an event of an unknown lease, two
 * acquisitions with one holder id): those are harness bugs, and must not pass silently.
 */
import type { AcquireEvent, HistoryEvent, LostEvent, ReleaseEvent, RenewEvent, WriteEvent } from './recorder.js';

export type CheckName = 'overlap' | 'fence-order' | 'unsignalled-loss' | 'stale-write' | 'malformed';

export interface Violation {
  check: CheckName;
  key: string;
  message: string;
  /** The leases (holder ids) involved. */
  holders: string[];
}

export interface CheckOptions {
  /**
   * Overlaps up to this many ms are tolerated (stamps of different processes can disagree by a
   * few microseconds). @default 0
   */
  toleranceMs?: number;
}

export interface CheckResult {
  violations: Violation[];
  /** Violations per check. */
  counts: Record<CheckName, number>;
  stats: {
    keys: number;
    leases: number;
    /** Leases that were never valid (granted already expired, or of zero length). */
    neverValid: number;
    released: number;
    lost: number;
    lostByReason: Record<string, number>;
    /**
     * Leases found gone (`taken`) while still valid by the library's account: the server lost a
     * lock early (eviction, restart, early expiry). A `taken` after validity ran out is only a
     * holder too slow to notice its expiry first.
     */
    takenWhileValid: number;
    crashed: number;
    renewals: number;
    writes: number;
    writesAccepted: number;
  };
}

/** A lease as reconstructed from the history. */
export interface LeaseRecord {
  key: string;
  holder: string;
  proc: string;
  fence: bigint;
  tAcquired: number;
  /** Validity reported at acquisition. */
  validUntil: number;
  /** Valid segments [start, end), clipped to the end of the lease. */
  segments: [number, number][];
  /** When the lease ended (release, loss or crash), Infinity when it never did. */
  tEnd: number;
  release?: ReleaseEvent;
  lost?: LostEvent;
  crashedAt?: number;
  renewals: RenewEvent[];
}

const CHECKS: CheckName[] = ['overlap', 'fence-order', 'unsignalled-loss', 'stale-write', 'malformed'];

/** Checks a history; see the module comment. Events may come in any order. */
export function checkHistory(events: readonly HistoryEvent[], options: CheckOptions = {}): CheckResult {
  const tolerance = options.toleranceMs ?? 0;
  const violations: Violation[] = [];
  const leases = new Map<string, LeaseRecord>();
  const crashes = new Map<string, number>();
  const renews: RenewEvent[] = [];
  const ends: (ReleaseEvent | LostEvent)[] = [];
  const writes: WriteEvent[] = [];

  for (const e of events) {
    switch (e.type) {
      case 'acquire': {
        if (leases.has(e.holder)) {
          violations.push({ check: 'malformed', key: e.key, message: `two acquisitions recorded for holder ${e.holder}`, holders: [e.holder] });
          continue;
        }
        leases.set(e.holder, newLease(e));
        break;
      }
      case 'renew':
        renews.push(e);
        break;
      case 'release':
      case 'lost':
        ends.push(e);
        break;
      case 'write':
        writes.push(e);
        break;
      case 'crash':
        crashes.set(e.proc, Math.min(e.t, crashes.get(e.proc) ?? Infinity));
        break;
      default:
        violations.push({ check: 'malformed', key: '', message: `unknown event ${JSON.stringify(e)}`, holders: [] });
    }
  }

  const leaseOf = (e: { key: string; holder: string; type: string }): LeaseRecord | null => {
    const l = leases.get(e.holder);
    if (l && l.key === e.key) return l;
    violations.push({ check: 'malformed', key: e.key, message: `${e.type} event of unknown lease ${e.holder}`, holders: [e.holder] });
    return null;
  };

  for (const e of ends) {
    const l = leaseOf(e);
    if (!l) continue;
    if (e.type === 'release') {
      if (l.release) violations.push({ check: 'malformed', key: e.key, message: `lease ${e.holder} released twice`, holders: [e.holder] });
      else l.release = e;
    } else if (!l.lost) {
      l.lost = e;
    }
  }
  for (const e of renews) {
    const l = leaseOf(e);
    if (l) l.renewals.push(e);
  }
  for (const l of leases.values()) {
    const crashedAt = crashes.get(l.proc);
    if (crashedAt !== undefined && crashedAt >= l.tAcquired) l.crashedAt = crashedAt;
    l.tEnd = Math.min(l.release?.t ?? Infinity, l.lost?.t ?? Infinity, l.crashedAt ?? Infinity);
    l.segments = validSegments(l);
  }

  const byKey = new Map<string, LeaseRecord[]>();
  for (const l of leases.values()) {
    let list = byKey.get(l.key);
    if (!list) byKey.set(l.key, (list = []));
    list.push(l);
  }
  const rankOf = new Map<string, number>();
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.tAcquired - b.tAcquired || (a.fence < b.fence ? -1 : a.fence > b.fence ? 1 : 0));
    list.forEach((l, i) => rankOf.set(l.holder, i));
    checkOverlaps(key, list, tolerance, violations);
    checkFenceOrder(key, list, violations);
  }
  for (const l of leases.values()) checkSignalled(l, violations);
  checkWrites(writes, leases, rankOf, violations);

  const counts = Object.fromEntries(CHECKS.map((c) => [c, 0])) as Record<CheckName, number>;
  for (const v of violations) counts[v.check]++;
  const lostByReason: Record<string, number> = {};
  let neverValid = 0;
  let takenWhileValid = 0;
  for (const l of leases.values()) {
    if (l.lost) lostByReason[l.lost.reason] = (lostByReason[l.lost.reason] ?? 0) + 1;
    if (l.segments.length === 0) neverValid++;
    if (l.lost?.reason === 'taken' && l.lost.t < Math.max(l.validUntil, ...l.renewals.map((r) => r.validUntil))) takenWhileValid++;
  }
  const all = [...leases.values()];
  return {
    violations,
    counts,
    stats: {
      keys: byKey.size,
      leases: leases.size,
      neverValid,
      released: all.filter((l) => l.release?.deleted).length,
      lost: all.filter((l) => l.lost).length,
      lostByReason,
      takenWhileValid,
      crashed: all.filter((l) => l.crashedAt !== undefined).length,
      renewals: renews.length,
      writes: writes.length,
      writesAccepted: writes.filter((w) => w.accepted).length,
    },
  };
}

function newLease(e: AcquireEvent): LeaseRecord {
  return {
    key: e.key,
    holder: e.holder,
    proc: e.proc,
    fence: BigInt(e.fence),
    tAcquired: e.t,
    validUntil: e.validUntil,
    segments: [[e.t, e.validUntil]],
    tEnd: Infinity,
    renewals: [],
  };
}

/** The lease's valid time: acquisition to validity, moved by renewals, clipped to its end. */
function validSegments(l: LeaseRecord): [number, number][] {
  const first = l.segments[0]!;
  const raw: [number, number][] = [];
  let cur: [number, number] = [first[0], first[1]];
  const renewals = [...l.renewals].sort((a, b) => a.t - b.t);
  for (const r of renewals) {
    if (r.t <= cur[1]) {
      cur[1] = Math.max(cur[1], r.validUntil);
    } else {
      // validity had run out before this renewal was seen: a gap in which the lease was not valid
      raw.push(cur);
      cur = [r.t, r.validUntil];
    }
  }
  raw.push(cur);
  const out: [number, number][] = [];
  for (const [s, e] of raw) {
    const end = Math.min(e, l.tEnd);
    if (end > s) out.push([s, end]);
  }
  return out;
}

function checkOverlaps(key: string, list: LeaseRecord[], tolerance: number, violations: Violation[]): void {
  // a sweep over segments by start; `active` holds segments that have not ended yet
  const segs: { start: number; end: number; lease: LeaseRecord }[] = [];
  for (const l of list) for (const [start, end] of l.segments) segs.push({ start, end, lease: l });
  segs.sort((a, b) => a.start - b.start);
  let active: typeof segs = [];
  const reported = new Set<string>();
  for (const s of segs) {
    active = active.filter((a) => a.end - s.start > tolerance);
    for (const a of active) {
      if (a.lease === s.lease) continue;
      const overlap = Math.min(a.end, s.end) - s.start;
      if (overlap <= tolerance) continue;
      const pair = a.lease.holder + '|' + s.lease.holder;
      if (reported.has(pair)) continue;
      reported.add(pair);
      violations.push({
        check: 'overlap',
        key,
        holders: [a.lease.holder, s.lease.holder],
        message:
          `${s.lease.holder} (fence ${s.lease.fence}) became valid at ${fmt(s.start)} while ${a.lease.holder} ` +
          `(fence ${a.lease.fence}) was valid until ${fmt(a.end)}: ${overlap.toFixed(3)} ms of overlap` +
          describeEnd(a.lease),
      });
    }
    active.push(s);
  }
}

function checkFenceOrder(key: string, list: LeaseRecord[], violations: Violation[]): void {
  let prev: LeaseRecord | null = null;
  for (const l of list) {
    if (l.segments.length === 0) continue;
    if (prev && !(l.fence > prev.fence)) {
      violations.push({
        check: 'fence-order',
        key,
        holders: [prev.holder, l.holder],
        message: `${l.holder} was granted after ${prev.holder} (${fmt(l.tAcquired)} > ${fmt(prev.tAcquired)}) with fence ${l.fence} <= ${prev.fence}`,
      });
    }
    prev = l;
  }
}

function checkSignalled(l: LeaseRecord, violations: Violation[]): void {
  if (l.release?.deleted || l.lost || l.release?.error !== undefined || l.crashedAt !== undefined) return;
  violations.push({
    check: 'unsignalled-loss',
    key: l.key,
    holders: [l.holder],
    message: l.release
      ? `${l.holder} (fence ${l.fence}): release found the lease already gone, but no loss was signalled`
      : `${l.holder} (fence ${l.fence}) never ended: not released, no loss signalled, its process did not crash`,
  });
}

function checkWrites(writes: WriteEvent[], leases: Map<string, LeaseRecord>, rankOf: Map<string, number>, violations: Violation[]): void {
  const byKey = new Map<string, WriteEvent[]>();
  for (const w of writes) {
    let list = byKey.get(w.key);
    if (!list) byKey.set(w.key, (list = []));
    list.push(w);
  }
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.seq - b.seq);
    let newest: { rank: number; w: WriteEvent } | null = null;
    for (const w of list) {
      const l = leases.get(w.holder);
      const rank = rankOf.get(w.holder);
      if (!l || rank === undefined || l.key !== key) {
        violations.push({ check: 'malformed', key, message: `write from unknown lease ${w.holder}`, holders: [w.holder] });
        continue;
      }
      if (BigInt(w.fence) !== l.fence) {
        violations.push({ check: 'malformed', key, message: `write of ${w.holder} carries fence ${w.fence}, its lease has ${l.fence}`, holders: [w.holder] });
      }
      if (!w.accepted) continue;
      if (newest && rank < newest.rank) {
        violations.push({
          check: 'stale-write',
          key,
          holders: [w.holder, newest.w.holder],
          message:
            `the resource accepted write #${w.seq} of ${w.holder} (fence ${w.fence}) after write #${newest.w.seq} of ` +
            `${newest.w.holder} (fence ${newest.w.fence}), which was granted later`,
        });
        continue;
      }
      if (!newest || rank > newest.rank) newest = { rank, w };
    }
  }
}

function describeEnd(l: LeaseRecord): string {
  if (l.release && l.release.t === l.tEnd) return ` (${l.holder} released at ${fmt(l.release.t)})`;
  if (l.lost && l.lost.t === l.tEnd) return ` (${l.holder} was signalled lost, ${l.lost.reason}, at ${fmt(l.lost.t)})`;
  return '';
}

function fmt(t: number): string {
  return Number.isFinite(t) ? t.toFixed(3) : String(t);
}

/** A short human summary of a result, for logs. */
export function summarize(r: CheckResult): string {
  const s = r.stats;
  const lost = Object.entries(s.lostByReason)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return (
    `${s.leases} leases on ${s.keys} keys (released ${s.released}, lost ${s.lost}${lost ? ` [${lost}]` : ''}` +
    `${s.takenWhileValid ? `, ${s.takenWhileValid} found taken while valid` : ''}, ` +
    `crashed ${s.crashed}, never valid ${s.neverValid}), ${s.renewals} renewals, ${s.writes} writes (${s.writesAccepted} accepted); ` +
    `violations: ${CHECKS.map((c) => `${c}=${r.counts[c]}`).join(' ')}`
  );
}
