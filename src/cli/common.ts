/** What every command shares: exit codes, connection flags, and how a Locks factory is built from flags, then env, then defaults. */
import { readFileSync } from 'node:fs'
import { Locks, parseServerList, type LocksOptions, type ServerAddress } from '../index.js'
import { UsageError, type FlagSpec, type FlagValues } from './args.js'
import { eprintln, paint, type Io } from './output.js'

/** Exit codes of the CLI (documented in the README). */
export const EXIT = {
  OK: 0,
  /** `doctor`: a server is unsafe or unreachable. */
  UNSAFE: 1,
  /** Bad usage: unknown flag, missing `--`, bad value. */
  USAGE: 64,
  /** No memcached server could be reached. */
  UNAVAILABLE: 69,
  /** Internal error (a bug: please report). */
  SOFTWARE: 70,
  /** `run --no-wait`: someone else holds the lock. */
  BUSY: 75,
  /** `run --wait`: the lock stayed taken for the whole wait. */
  TIMEOUT: 76,
  /** `run`: the lock was lost while the command ran. */
  LOST: 77,
} as const

export const CONNECTION_FLAGS: Record<string, FlagSpec> = {
  servers: { type: 'list', short: 's' },
  prefix: { type: 'string' },
  tls: { type: 'boolean' },
  'tls-ca': { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  'connect-timeout': { type: 'duration' },
  'request-timeout': { type: 'duration' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
}

export const CONNECTION_HELP = `Connection (flags, then environment, then defaults):
  -s, --servers <list>      host:port[,host:port...]   env MEMCACHED_SERVERS, MEMCACHEDLOCK_SERVERS; default 127.0.0.1:11211
      --prefix <text>       key namespace               env MEMCACHED_LOCK_PREFIX; default "lock:"
      --tls                 connect with TLS            env MEMCACHED_TLS=1
      --tls-ca <file>       CA certificate (PEM)        env MEMCACHED_TLS_CA
      --username <name>     for servers started with -Y env MEMCACHED_USERNAME
      --password <secret>                               env MEMCACHED_PASSWORD
      --connect-timeout <d> default 2s     --request-timeout <d>  default 2s
      --json                machine-readable output
  -h, --help`

/** Servers from the flag, then the environment (same order as the library). */
export function serversFrom(flags: FlagValues, env: NodeJS.ProcessEnv): ServerAddress[] {
  const list = flags.servers as string[] | undefined
  try {
    if (list && list.length > 0) return parseServerList(list)
    const e = env.MEMCACHED_SERVERS?.trim() || env.MEMCACHEDLOCK_SERVERS?.trim()
    return parseServerList(e || '127.0.0.1:11211')
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

export function locksOptionsFrom(flags: FlagValues, io: Io): LocksOptions {
  const env = io.env
  const tlsOn = (flags.tls as boolean | undefined) ?? (env.MEMCACHED_TLS === '1' || env.MEMCACHED_TLS === 'true')
  const caFile = (flags['tls-ca'] as string | undefined) ?? env.MEMCACHED_TLS_CA
  let tls: LocksOptions['tls']
  if (tlsOn || caFile) {
    try {
      tls = caFile ? { ca: readFileSync(caFile, 'utf8') } : true
    } catch (err) {
      throw new UsageError(`cannot read --tls-ca ${caFile}: ${(err as Error).message}`)
    }
  }
  const username = (flags.username as string | undefined) ?? env.MEMCACHED_USERNAME
  const password = (flags.password as string | undefined) ?? env.MEMCACHED_PASSWORD
  if ((username === undefined) !== (password === undefined)) throw new UsageError('--username and --password go together')
  return {
    servers: serversFrom(flags, env),
    prefix: (flags.prefix as string | undefined) ?? env.MEMCACHED_LOCK_PREFIX ?? 'lock:',
    tls,
    auth: username !== undefined ? { username, password: password as string } : undefined,
    connectTimeoutMs: flags['connect-timeout'] as number | undefined,
    requestTimeoutMs: flags['request-timeout'] as number | undefined,
    onWarning: (message) => eprintln(io, paint(io, 'yellow', `warning: ${message}`, 'stderr')),
  }
}

export function makeLocks(flags: FlagValues, io: Io): Locks {
  return new Locks(locksOptionsFrom(flags, io))
}

/** True for errors that mean "no server could be reached". */
export function isUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code
  return code === 'ERR_LOCK_UNAVAILABLE' || (typeof code === 'string' && (code.startsWith('ERR_CONN') || code === 'ERR_REQUEST_TIMEOUT' || code === 'ERR_AUTH'))
}

export function describeError(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } }
  const cause = e?.cause?.message
  return cause && !e.message?.includes(cause) ? `${e.message}: ${cause}` : String(e?.message ?? err)
}

/**
 * What a command does with an error from the library: "no server" prints one line and gives
 * {@link EXIT.UNAVAILABLE}; a refused argument is bad usage; anything else propagates (a bug).
 */
export function exitForError(err: unknown, io: Io): number {
  if (isUnavailable(err)) {
    eprintln(io, `memcached-lock: ${describeError(err)}`)
    return EXIT.UNAVAILABLE
  }
  if ((err as { code?: string }).code === 'ERR_INVALID_ARGUMENT') throw new UsageError((err as Error).message)
  throw err
}
