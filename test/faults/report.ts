/**
 * Summarises a fault-suite report (the JSON lines written when `FAULT_REPORT=<file>` is set)
 * as the Markdown table of docs/RELIABILITY.md:
 *
 *   FAULT_REPORT=/tmp/faults.jsonl npm run test:faults
 *   node --import tsx test/faults/report.ts /tmp/faults.jsonl
 */
import { readFileSync } from 'node:fs';

interface Row {
  scenario: string;
  seed: number;
  faults: string[];
  acquisitions: number;
  stats: { leases: number; lost: number; lostByReason: Record<string, number>; takenWhileValid?: number; writes: number; writesAccepted: number };
  violations: Record<string, number>;
  warnings: number;
  durationMs: number;
}

const file = process.argv[2];
if (!file) {
  console.error('usage: node --import tsx test/faults/report.ts <report.jsonl>');
  process.exit(2);
}
const rows = readFileSync(file, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as Row);

const by = new Map<string, Row[]>();
for (const r of rows) {
  const list = by.get(r.scenario) ?? [];
  list.push(r);
  by.set(r.scenario, list);
}

const fmt = (m: Record<string, number>): string =>
  Object.entries(m)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || '0';

console.log('| scenario | runs (seeds) | faults injected | leases | lost (by reason) | found gone while valid | violations |');
console.log('|---|---|---|---|---|---|---|');
let totals = { runs: 0, faults: 0, leases: 0 };
const allViolations: Record<string, number> = {};
for (const [scenario, list] of by) {
  const lost: Record<string, number> = {};
  const violations: Record<string, number> = {};
  for (const r of list) {
    for (const [k, v] of Object.entries(r.stats.lostByReason)) lost[k] = (lost[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.violations)) violations[k] = (violations[k] ?? 0) + v;
  }
  for (const [k, v] of Object.entries(violations)) allViolations[k] = (allViolations[k] ?? 0) + v;
  const faults = list.reduce((a, r) => a + r.faults.length, 0);
  const leases = list.reduce((a, r) => a + r.stats.leases, 0);
  const early = list.reduce((a, r) => a + (r.stats.takenWhileValid ?? 0), 0);
  totals = { runs: totals.runs + list.length, faults: totals.faults + faults, leases: totals.leases + leases };
  console.log(
    `| ${scenario} | ${list.length} (${list.map((r) => r.seed).join(', ')}) | ${faults} | ${leases} | ${fmt(lost)} | ${early} | ${fmt(violations)} |`,
  );
}
console.log(`\n${totals.runs} runs, ${totals.faults} faults injected, ${totals.leases} leases checked; violations: ${fmt(allViolations)}`);
