/**
 * The writer serializer in front of a SQL table with a version column (SQLite through
 * better-sqlite3 v12). Each transfer reads a row and its version, computes, and commits with
 * `UPDATE ... WHERE id = ? AND version = ?`: zero rows changed means another writer committed
 * first (a conflict). The serializer queues writers of the same row; the version check stays
 * as the safety net.
 *
 *   MEMCACHED_SERVERS=127.0.0.1:11211 npx tsx examples/serializer-sqlite.ts
 */
import Database from 'better-sqlite3'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Locks } from 'memcached-lock'

export class VersionConflict extends Error {}

export interface SqliteExampleResult {
  readonly balance: number
  readonly expected: number
  readonly conflicts: number
  readonly retries: number
  readonly runs: number
}

export async function main(options: { servers?: string; writers?: number; deposits?: number } = {}): Promise<SqliteExampleResult> {
  const servers = options.servers ?? process.env.MEMCACHED_SERVERS ?? '127.0.0.1:11211'
  const writers = options.writers ?? 5
  const deposits = options.deposits ?? 10
  const dir = mkdtempSync(path.join(tmpdir(), 'memcached-lock-sqlite-'))
  const file = path.join(dir, 'bank.db')
  const setup = new Database(file)
  setup.pragma('journal_mode = WAL')
  setup.exec('CREATE TABLE account (id TEXT PRIMARY KEY, balance INTEGER NOT NULL, version INTEGER NOT NULL)')
  setup.prepare('INSERT INTO account VALUES (?, 0, 0)').run('acct-1')
  setup.close()

  const locks = new Locks({ servers, prefix: `example-sql-${process.pid}:` })
  const serializer = locks.serializer({ isConflict: (e) => e instanceof VersionConflict })
  // each writer has its own connection, as separate application servers would
  const dbs = Array.from({ length: writers }, () => new Database(file))
  try {
    await Promise.all(
      dbs.map(async (db) => {
        const read = db.prepare('SELECT balance, version FROM account WHERE id = ?')
        const write = db.prepare('UPDATE account SET balance = ?, version = version + 1 WHERE id = ? AND version = ?')
        for (let i = 0; i < deposits; i++) {
          await serializer.run('account:acct-1', async () => {
            const row = read.get('acct-1') as { balance: number; version: number }
            await new Promise((r) => setTimeout(r, 2)) // compute the new balance (fees, rules, an API call...)
            const changed = write.run(row.balance + 10, 'acct-1', row.version).changes
            if (changed === 0) throw new VersionConflict('account changed since it was read')
          })
        }
      }),
    )
    const { balance } = dbs[0]!.prepare('SELECT balance FROM account WHERE id = ?').get('acct-1') as { balance: number }
    const s = serializer.stats()
    return { balance, expected: writers * deposits * 10, conflicts: s.conflicts, retries: s.retries, runs: s.runs }
  } finally {
    for (const db of dbs) db.close()
    await locks.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() as string)) {
  main().then(
    (r) => {
      console.log(`${r.runs} deposits, ${r.conflicts} conflicts, ${r.retries} retries; balance ${r.balance} (expected ${r.expected})`)
      process.exitCode = r.balance === r.expected ? 0 : 1
    },
    (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    },
  )
}
