/**
 * The demo's optimistic-concurrency store: one hot object with a version. In memcached the
 * version is the item's CAS (`mg v c` to read, `ms C<cas>` to commit: `EX` means someone else
 * committed first); in memory it is a counter. A failed commit throws {@link VersionConflictError}.
 */
import { encodeKey, MemcachedClient, parseServerList } from '../../index.js'

export class VersionConflictError extends Error {
  readonly code = 'VERSION_CONFLICT'
  constructor(key: string) {
    super(`${key} was changed by another writer since it was read`)
    this.name = 'VersionConflictError'
  }
}

export interface Versioned {
  readonly value: number
  readonly version: string
}

export interface OptimisticStore {
  read(): Promise<Versioned>
  /** Commits `value` if the object is still at `version`; throws {@link VersionConflictError} otherwise. */
  write(value: number, version: string): Promise<void>
  reset(): Promise<void>
  close(): Promise<void>
}

export class MemcachedHotObject implements OptimisticStore {
  readonly #client: MemcachedClient
  readonly #key
  readonly #name: string

  constructor(servers: string, name: string) {
    this.#client = new MemcachedClient({ servers: parseServerList(servers) })
    this.#name = name
    this.#key = encodeKey('demo:', name)
  }

  async read(): Promise<Versioned> {
    const conn = this.#client.connectionFor(this.#key)
    const r = await conn.metaGet(this.#key, ['v', 'c'])
    if (r.status !== 'VA') throw new Error(`hot object ${this.#name} is missing (${r.status})`)
    return { value: Number((r.value as Buffer).toString()), version: r.flags.c as string }
  }

  async write(value: number, version: string): Promise<void> {
    const conn = this.#client.connectionFor(this.#key)
    const r = await conn.metaSet(this.#key, String(value), ['T0', 'C' + version])
    if (r.status === 'EX' || r.status === 'NF') throw new VersionConflictError(this.#name)
    if (r.status !== 'HD') throw new Error(`unexpected ${r.status} committing ${this.#name}`)
  }

  async reset(): Promise<void> {
    const conn = this.#client.connectionFor(this.#key)
    await conn.metaSet(this.#key, '0', ['T0'])
  }

  close(): Promise<void> {
    return this.#client.close()
  }
}

export class MemoryHotObject implements OptimisticStore {
  #value = 0
  #version = 0

  async read(): Promise<Versioned> {
    return { value: this.#value, version: String(this.#version) }
  }

  async write(value: number, version: string): Promise<void> {
    if (String(this.#version) !== version) throw new VersionConflictError('hot object')
    this.#value = value
    this.#version++
  }

  async reset(): Promise<void> {
    this.#value = 0
    this.#version++
  }

  async close(): Promise<void> {}
}
