/** `memcached-lock release <key> --force`: delete a stuck lock, whoever holds it. */
import { createInterface } from 'node:readline/promises'
import { parseArgs, UsageError } from '../args.js'
import { CONNECTION_FLAGS, CONNECTION_HELP, EXIT, exitForError, makeLocks } from '../common.js'
import { println, toJson, type Io } from '../output.js'

export const RELEASE_HELP = `Usage: memcached-lock release <key> --force [--yes] [options]

Deletes the lock <key> whoever holds it. The holder loses mutual exclusion without being told
until its next renewal: use it for locks whose holder is gone. Asks for confirmation on a
terminal unless --yes is given.

Options:
      --force               required: says you mean it
  -y, --yes                 do not ask
${CONNECTION_HELP}

Exit codes: 0 released (or already free); 1 not confirmed; ${EXIT.UNAVAILABLE} server unreachable; ${EXIT.USAGE} bad usage.

Examples:
  memcached-lock release nightly-report --force
  memcached-lock release deploy --force --yes -s mc1:11211`

export interface ReleaseIo extends Io {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean }
}

export async function releaseCommand(argv: readonly string[], io: ReleaseIo): Promise<number> {
  const { flags, positionals, rest } = parseArgs(argv, { ...CONNECTION_FLAGS, force: { type: 'boolean' }, yes: { type: 'boolean', short: 'y' } })
  if (flags.help) {
    println(io, RELEASE_HELP)
    return EXIT.OK
  }
  if (rest !== null) throw new UsageError('release takes no "--"')
  if (positionals.length !== 1) throw new UsageError('release needs exactly one lock key')
  if (!flags.force) throw new UsageError('release needs --force: it deletes the lock whoever holds it')
  const key = positionals[0] as string
  const locks = makeLocks(flags, io)
  try {
    const info = await locks.inspect(key)
    if (!info) {
      if (flags.json) println(io, toJson({ key, released: false, wasHeld: false }))
      else println(io, `lock "${key}" is free`)
      return EXIT.OK
    }
    if (!flags.yes && io.stdin.isTTY && io.stdout.isTTY) {
      const who = info.owner ? `${info.owner.host ?? '?'} pid ${info.owner.pid ?? '?'}` : 'an unknown holder'
      const rl = createInterface({ input: io.stdin, output: io.stdout })
      const answer = await rl.question(`Release lock "${key}" held by ${who}? [y/N] `)
      rl.close()
      if (!/^y(es)?$/i.test(answer.trim())) {
        println(io, 'not released')
        return 1
      }
    }
    const released = await locks.forceRelease(key)
    if (flags.json) println(io, toJson({ key, released, wasHeld: true, owner: info.owner }))
    else println(io, released ? `released lock "${key}"` : `lock "${key}" was already free`)
    return EXIT.OK
  } catch (err) {
    return exitForError(err, io)
  } finally {
    await locks.close()
  }
}
