/** `memcached-lock status <key...>`: who holds each lock, for how long, with which fencing token. */
import { parseArgs, UsageError } from '../args.js'
import { CONNECTION_FLAGS, CONNECTION_HELP, EXIT, exitForError, makeLocks } from '../common.js'
import { formatMs, paint, println, table, toJson, type Io } from '../output.js'

export const STATUS_HELP = `Usage: memcached-lock status <key...> [options]

Shows, for each lock: held or free, the remaining TTL (memcached counts whole seconds, so this
is an upper bound), the holder (host, pid, since, label) and the fencing token.

${CONNECTION_HELP}

Exit codes: 0 when every lock could be read; ${EXIT.UNAVAILABLE} server unreachable; ${EXIT.USAGE} bad usage.

Examples:
  memcached-lock status nightly-report
  memcached-lock status deploy sync --json`

export async function statusCommand(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals, rest } = parseArgs(argv, CONNECTION_FLAGS)
  if (flags.help) {
    println(io, STATUS_HELP)
    return EXIT.OK
  }
  if (rest !== null) throw new UsageError('status takes no "--"')
  if (positionals.length === 0) throw new UsageError('status needs at least one lock key')
  const locks = makeLocks(flags, io)
  try {
    const rows = []
    for (const key of positionals) {
      const info = await locks.inspect(key)
      rows.push(
        info
          ? {
              key,
              held: true,
              remainingMs: info.remainingMs,
              owner: info.owner,
              fencingToken: info.fence,
              server: info.server,
            }
          : { key, held: false },
      )
    }
    if (flags.json) {
      println(io, toJson(rows))
      return EXIT.OK
    }
    const lines: string[][] = [['KEY', 'STATE', 'TTL LEFT', 'HOLDER', 'SINCE', 'FENCING TOKEN']]
    for (const r of rows) {
      if (!r.held) {
        lines.push([r.key, paint(io, 'green', 'free'), '-', '-', '-', '-'])
        continue
      }
      const o = r.owner
      const holder = o ? `${o.host ?? '?'} pid ${o.pid ?? '?'}${o.label ? ` (${o.label})` : ''}` : 'unknown'
      const since = o?.since ? new Date(o.since).toISOString() : '-'
      lines.push([r.key, paint(io, 'yellow', 'held'), `<= ${formatMs(r.remainingMs ?? null)}`, holder, since, String(r.fencingToken)])
    }
    println(io, table(lines))
    return EXIT.OK
  } catch (err) {
    return exitForError(err, io)
  } finally {
    await locks.close()
  }
}
