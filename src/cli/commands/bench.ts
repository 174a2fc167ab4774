/** `memcached-lock bench`: a quick local benchmark: the lock cycle against the raw two-command floor. */
import net from 'node:net'
import { Locks } from '../../index.js'
import { parseArgs, UsageError } from '../args.js'
import { EXIT } from '../common.js'
import { findMemcached, startLocalMemcached } from '../local-memcached.js'
import { eprintln, println, table, toJson, type Io } from '../output.js'

export const BENCH_HELP = `Usage: memcached-lock bench [options]

A quick local benchmark (about 10 s): uncontended acquire+release cycles per second of
memcached-lock against a raw-socket floor (ms ME + md C, the least any lock can send),
interleaved over rounds on a private memcached. The full suite with Redis locks is "npm run bench"
in the repository.

Options:
      --rounds <n>          interleaved rounds              default 3
      --cycles <n>          cycles per round and contender  default 3000
      --json                machine-readable output
  -h, --help

Examples:
  npx memcached-lock bench
  npx memcached-lock bench --rounds 5 --json`

export async function benchCommand(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals, rest } = parseArgs(argv, {
    rounds: { type: 'integer' },
    cycles: { type: 'integer' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  })
  if (flags.help) {
    println(io, BENCH_HELP)
    return EXIT.OK
  }
  if (positionals.length > 0 || rest !== null) throw new UsageError('bench takes no arguments')
  const rounds = (flags.rounds as number | undefined) ?? 3
  const cycles = (flags.cycles as number | undefined) ?? 3000
  if (rounds < 1 || rounds > 50 || cycles < 10 || cycles > 1_000_000) throw new UsageError('--rounds must be 1-50 and --cycles 10-1000000')
  const bin = findMemcached(io.env)
  if (!bin) {
    eprintln(io, 'memcached-lock bench needs memcached on PATH (or MEMCACHED_BIN)')
    return EXIT.UNAVAILABLE
  }
  const server = await startLocalMemcached(bin)
  const locks = new Locks({ servers: server.address, prefix: 'bench:', onWarning: () => {} })
  const raw = await RawFloor.connect(server.address)
  try {
    const floor: number[] = []
    const lib: number[] = []
    const mutex = locks.mutex('cycle')
    await raw.cycles(200)
    for (let i = 0; i < 200; i++) await (await mutex.acquire()).release()
    for (let r = 0; r < rounds; r++) {
      floor.push(await raw.cycles(cycles))
      let t = performance.now()
      for (let i = 0; i < cycles; i++) await (await mutex.acquire()).release()
      lib.push(cycles / ((performance.now() - t) / 1000))
      t = 0
    }
    const f = median(floor)
    const l = median(lib)
    const result = { rounds, cycles, rawFloorCyclesPerSec: Math.round(f), memcachedLockCyclesPerSec: Math.round(l), ratio: Math.round((l / f) * 100) / 100 }
    if (flags.json) println(io, toJson(result))
    else {
      println(io, table([
        ['contender', 'cycles/s (median)'],
        ['raw floor (ms ME + md C)', String(result.rawFloorCyclesPerSec)],
        ['memcached-lock acquire+release', String(result.memcachedLockCyclesPerSec)],
        ['ratio', `${result.ratio}x`],
      ]))
    }
    return EXIT.OK
  } finally {
    raw.close()
    await locks.close()
    await server.stop()
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] as number
}

/** The least a lock can do: one `ms ME` and one `md C` per cycle on a bare socket. */
class RawFloor {
  #sock: net.Socket
  #buf = ''
  #waiter: ((line: string) => void) | null = null

  private constructor(sock: net.Socket) {
    this.#sock = sock
    sock.setNoDelay(true)
    sock.on('data', (d: Buffer) => {
      this.#buf += d.toString('latin1')
      const i = this.#buf.indexOf('\r\n')
      if (i !== -1 && this.#waiter) {
        const line = this.#buf.slice(0, i)
        this.#buf = this.#buf.slice(i + 2)
        const w = this.#waiter
        this.#waiter = null
        w(line)
      }
    })
  }

  static connect(address: string): Promise<RawFloor> {
    const [host, port] = address.split(':') as [string, string]
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port: Number(port) })
      s.once('connect', () => resolve(new RawFloor(s)))
      s.once('error', reject)
    })
  }

  #send(text: string): Promise<string> {
    return new Promise((resolve) => {
      this.#waiter = resolve
      this.#sock.write(text)
    })
  }

  async cycles(n: number): Promise<number> {
    const token = '0123456789abcdef0123456789abcdef'
    const t = performance.now()
    for (let i = 0; i < n; i++) {
      const r = await this.#send(`ms raw:cycle 32 T30 ME c\r\n${token}\r\n`)
      await this.#send(`md raw:cycle C${r.slice(r.indexOf(' c') + 2)}\r\n`)
    }
    return n / ((performance.now() - t) / 1000)
  }

  close(): void {
    this.#sock.destroy()
  }
}
