/** `memcached-lock run <key> -- <cmd>`: run a command under a lock (the flock(1) / `etcdctl lock` pattern). */
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { LockTimeoutError, type LockHandle } from '../../index.js'
import { parseArgs, UsageError } from '../args.js'
import { CONNECTION_FLAGS, CONNECTION_HELP, EXIT, describeError, isUnavailable, makeLocks } from '../common.js'
import { eprintln, paint, println, type Io } from '../output.js'

export const RUN_HELP = `Usage: memcached-lock run <key> [options] -- <command> [args...]

Acquires the lock <key>, runs <command> with stdio passed through while renewing the lease,
and releases the lock when the command exits. SIGINT, SIGTERM and SIGHUP are forwarded to it.
The command sees MEMCACHED_LOCK_KEY and MEMCACHED_LOCK_FENCING_TOKEN in its environment.

Options:
      --ttl <duration>      lease length, renewed while the command runs     default 30s
      --wait <duration>     longest wait for the lock                          default 60s
      --no-wait             one attempt: exit ${EXIT.BUSY} at once if the lock is taken
      --no-renew            do not renew: the lock ends after --ttl, and that counts as lost
                            (--on-lost applies: TERM by default, keep to let the command run on)
      --on-lost <action>    when the lock is lost: TERM (default), KILL, or keep (warn only)
      --label <text>        stored with the lock, shown by "status"
${CONNECTION_HELP}

Exit codes: the command's own code (128+N if killed by signal N); ${EXIT.BUSY} lock busy (--no-wait);
${EXIT.TIMEOUT} wait timed out; ${EXIT.LOST} lock lost while running; ${EXIT.USAGE} bad usage; ${EXIT.UNAVAILABLE} server unreachable.

Examples:
  memcached-lock run nightly-report --no-wait -- ./report.sh
  memcached-lock run deploy --wait 10m --ttl 2m -- npm run migrate
  */5 * * * * memcached-lock run -s mc1:11211,mc2:11211 sync --no-wait -- /opt/sync.sh`

const SPEC = {
  ...CONNECTION_FLAGS,
  ttl: { type: 'duration' },
  wait: { type: 'duration' },
  'no-wait': { type: 'boolean' },
  renew: { type: 'boolean' },
  'on-lost': { type: 'string' },
  label: { type: 'string' },
} as const

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

export async function runCommand(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals, rest } = parseArgs(argv, SPEC)
  if (flags.help) {
    println(io, RUN_HELP)
    return EXIT.OK
  }
  if (positionals.length === 0) throw new UsageError('run needs a lock key')
  // checked before the key count: `run mykey ./job.sh` is a missing "--", not two keys
  if (rest === null) throw new UsageError('run needs "--" before the command, e.g. memcached-lock run mykey -- ./job.sh')
  if (positionals.length !== 1) throw new UsageError(`run takes one key, got ${positionals.join(' ')}`)
  if (rest.length === 0) throw new UsageError('run needs a command after "--"')
  const key = positionals[0] as string
  const ttlMs = (flags.ttl as number | undefined) ?? 30_000
  if (ttlMs < 1000 || ttlMs > 2_591_999_000) throw new UsageError(`--ttl must be from 1s to 30 days minus 1s, got ${ttlMs} ms`)
  const noWait = flags['no-wait'] === true
  if (noWait && flags.wait !== undefined) throw new UsageError('--wait and --no-wait exclude each other')
  const waitMs = noWait ? 0 : ((flags.wait as number | undefined) ?? 60_000)
  if (waitMs > 86_400_000) throw new UsageError('--wait must be at most 24h')
  const onLost = String(flags['on-lost'] ?? 'TERM').toUpperCase()
  if (onLost !== 'TERM' && onLost !== 'KILL' && onLost !== 'KEEP') throw new UsageError(`--on-lost must be TERM, KILL or keep, got ${JSON.stringify(flags['on-lost'])}`)
  const autoRenew = flags.renew !== false

  const locks = makeLocks(flags, io)
  let handle: LockHandle | null
  try {
    const mutex = locks.mutex(key, { ttlMs, autoRenew, label: (flags.label as string | undefined) ?? `run ${rest.join(' ').slice(0, 80)}` })
    handle = noWait ? await mutex.tryAcquire() : await mutex.acquire({ waitMs })
  } catch (err) {
    await locks.close()
    if (err instanceof LockTimeoutError) {
      eprintln(io, `memcached-lock: lock "${key}" was still taken after ${waitMs} ms`)
      return EXIT.TIMEOUT
    }
    if (isUnavailable(err)) {
      eprintln(io, `memcached-lock: ${describeError(err)}`)
      return EXIT.UNAVAILABLE
    }
    if ((err as { code?: string }).code === 'ERR_INVALID_ARGUMENT') throw new UsageError((err as Error).message)
    throw err
  }
  if (!handle) {
    await locks.close()
    eprintln(io, `memcached-lock: lock "${key}" is busy`)
    return EXIT.BUSY
  }

  const [cmd, ...args] = rest as [string, ...string[]]
  const child = spawn(cmd, args, {
    stdio: 'inherit',
    env: { ...io.env, MEMCACHED_LOCK_KEY: key, MEMCACHED_LOCK_FENCING_TOKEN: handle.fencingToken.toString() },
  })
  const forward = (sig: NodeJS.Signals): void => {
    child.kill(sig)
  }
  for (const s of FORWARDED) process.on(s, forward)
  let lost = false
  handle.onLost((error) => {
    lost = true
    // a loss found only by the final release (e.g. after "release --force") comes when the command is gone
    const exited = child.exitCode !== null || child.signalCode !== null
    const what = exited ? '; the command had already exited' : onLost === 'KEEP' ? '; the command keeps running without it' : `; sending SIG${onLost} to the command`
    eprintln(io, paint(io, 'red', `memcached-lock: lock "${key}" was lost (${error.reason})${what}`, 'stderr'))
    if (onLost !== 'KEEP' && !exited) child.kill(`SIG${onLost}` as NodeJS.Signals)
  })
  const code = await new Promise<number>((resolve) => {
    child.once('error', (err) => {
      eprintln(io, `memcached-lock: cannot run ${cmd}: ${err.message}`)
      resolve(127)
    })
    child.once('exit', (c, signal) => resolve(c ?? 128 + (signal ? signalNumber(signal) : 0)))
  })
  for (const s of FORWARDED) process.off(s, forward)
  try {
    await handle.release()
  } catch (err) {
    eprintln(io, `memcached-lock: release failed (the lock ends by its TTL): ${describeError(err)}`)
  }
  await locks.close()
  return lost ? EXIT.LOST : code
}

function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 0
}
