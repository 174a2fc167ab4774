/**
 * The writer serializer in front of memcached CAS as the optimistic store.
 *
 * Many workers increment one counter: read it with its CAS (`mg v c`), do some work, write it
 * back only if the CAS still matches (`ms C<cas>`: `EX` means someone else wrote first).
 * Without the serializer they throw work away on conflicts; with it they queue.
 *
 *   MEMCACHED_SERVERS=127.0.0.1:11211 npx tsx examples/serializer-memcached-cas.ts
 */
import { randomUUID } from 'node:crypto'
import { encodeKey, Locks, MemcachedClient, parseServerList } from 'memcached-lock'

class CasConflict extends Error {}

export interface CasExampleResult {
  readonly final: number
  readonly expected: number
  readonly conflictsWithout: number
  readonly conflictsWith: number
}

export async function main(options: { servers?: string; workers?: number; updates?: number; workMs?: number } = {}): Promise<CasExampleResult> {
  const servers = options.servers ?? process.env.MEMCACHED_SERVERS ?? '127.0.0.1:11211'
  const workers = options.workers ?? 6
  const updates = options.updates ?? 10
  const workMs = options.workMs ?? 3
  const client = new MemcachedClient({ servers: parseServerList(servers) })
  const locks = new Locks({ servers, prefix: 'example-lock:' })
  // unique per run, so that runs sharing a server (or a process) never share a counter
  const name = `counter-${randomUUID()}`
  const key = encodeKey('example:', name)
  const conn = client.connectionFor(key)

  // one optimistic read-modify-write of the counter
  const increment = async (): Promise<void> => {
    const got = await conn.metaGet(key, ['v', 'c'])
    if (got.status !== 'VA') throw new Error(`counter ${name} is missing (${got.status})`)
    const value = Number((got.value as Buffer).toString())
    await new Promise((r) => setTimeout(r, workMs)) // the expensive part
    const put = await conn.metaSet(key, String(value + 1), ['C' + got.flags.c])
    if (put.status !== 'HD') throw new CasConflict(`counter changed since it was read (${put.status})`)
  }

  // 1. optimistic only: retry until the CAS matches
  await conn.metaSet(key, '0', ['T0'])
  let conflictsWithout = 0
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let i = 0; i < updates; i++) {
        for (;;) {
          try {
            await increment()
            break
          } catch (err) {
            if (!(err instanceof CasConflict)) throw err
            conflictsWithout++
          }
        }
      }
    }),
  )

  // 2. through the serializer: the lock is held from the read until after the CAS write
  const serializer = locks.serializer({ isConflict: (e) => e instanceof CasConflict })
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let i = 0; i < updates; i++) await serializer.run(name, increment)
    }),
  )
  const final = Number((await conn.metaGet(key, ['v'])).value?.toString())
  await conn.metaDelete(key, [])
  await locks.close()
  await client.close()
  const result = { final, expected: 2 * workers * updates, conflictsWithout, conflictsWith: serializer.stats().conflicts }
  return result
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() as string)) {
  main().then(
    (r) => {
      console.log(`optimistic only: ${r.conflictsWithout} conflicts; with the serializer: ${r.conflictsWith}`)
      console.log(`counter = ${r.final} (expected ${r.expected})`)
      process.exitCode = r.final === r.expected ? 0 : 1
    },
    (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    },
  )
}
