/** The `memcached-lock` command: a thin layer over the public API. */
import { readFileSync } from 'node:fs'
import { UsageError } from './args.js'
import { EXIT } from './common.js'
import { benchCommand, BENCH_HELP } from './commands/bench.js'
import { doctorCommand, DOCTOR_HELP } from './commands/doctor.js'
import { releaseCommand, RELEASE_HELP } from './commands/release.js'
import { runCommand, RUN_HELP } from './commands/run.js'
import { statusCommand, STATUS_HELP } from './commands/status.js'
import { demoCommand, DEMO_HELP } from './demo/demo.js'
import { eprintln, println, type Io } from './output.js'

export const HELP = `Usage: memcached-lock <command> [options]

Distributed locks on memcached, from the shell.

Commands:
  run <key> -- <cmd>      run a command under a lock (renewed while it runs)
  status <key...>         who holds a lock, for how long, with which fencing token
  release <key> --force   delete a stuck lock
  doctor [servers...]     check that servers can hold locks safely
  demo                    the writer serializer vs optimistic retries, side by side
  bench                   a quick local benchmark

Run "memcached-lock <command> --help" for the options and examples of each command.
Servers come from --servers, then MEMCACHED_SERVERS, then 127.0.0.1:11211.

Examples:
  memcached-lock run nightly-report --no-wait -- ./report.sh
  memcached-lock status nightly-report
  memcached-lock doctor mc1:11211 mc2:11211

Options:
  -h, --help     this help
  -V, --version  the version`

const COMMANDS: Record<string, { run: (argv: readonly string[], io: Io & { stdin: NodeJS.ReadableStream }) => Promise<number>; help: string }> = {
  run: { run: runCommand, help: RUN_HELP },
  status: { run: statusCommand, help: STATUS_HELP },
  release: { run: releaseCommand, help: RELEASE_HELP },
  doctor: { run: doctorCommand, help: DOCTOR_HELP },
  demo: { run: demoCommand, help: DEMO_HELP },
  bench: { run: benchCommand, help: BENCH_HELP },
}

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/** Runs the CLI; resolves with the exit code. Never throws for bad usage. */
export async function main(argv: readonly string[], io: Io & { stdin: NodeJS.ReadableStream } = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env }): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined) {
    // bad usage like any other: a one-line error, then the usage, on stderr
    eprintln(io, 'memcached-lock: a command is needed')
    eprintln(io, HELP)
    return EXIT.USAGE
  }
  if (command === '-h' || command === '--help' || command === 'help') {
    if (command === 'help' && rest[0] && COMMANDS[rest[0]]) println(io, (COMMANDS[rest[0]] as { help: string }).help)
    else println(io, HELP)
    return EXIT.OK
  }
  if (command === '-V' || command === '--version') {
    println(io, version())
    return EXIT.OK
  }
  const cmd = COMMANDS[command]
  if (!cmd) {
    eprintln(io, `memcached-lock: unknown command ${JSON.stringify(command)}`)
    eprintln(io, HELP.split('\n')[0] as string)
    eprintln(io, 'Run "memcached-lock --help" for the commands.')
    return EXIT.USAGE
  }
  try {
    return await cmd.run(rest, io)
  } catch (err) {
    if (err instanceof UsageError) {
      eprintln(io, `memcached-lock ${command}: ${err.message}`)
      eprintln(io, cmd.help.split('\n')[0] as string)
      eprintln(io, `Run "memcached-lock ${command} --help" for the options.`)
      return EXIT.USAGE
    }
    eprintln(io, `memcached-lock ${command}: ${(err as Error)?.stack ?? err}`)
    return EXIT.SOFTWARE
  }
}
