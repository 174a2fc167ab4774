/**
 * The thin facade over one {@link Connection} per server: configuration, key-to-server
 * selection (ketama, with no failover: a key whose server is down fails, it never moves), and
 * per-server health. Everything that talks to a server goes through `connectionFor(key)` or
 * `connections`.
 */
import { EventEmitter } from 'node:events'
import { InvalidArgumentError } from '../errors.js'
import { decodeWireKey, type WireKey } from '../protocol/keys.js'
import { Connection, type ConnectionOptions, type ConnectionState, type ServerIdentity } from './connection.js'
import { KetamaRing } from './ketama.js'
import { formatAddress, type ServerAddress } from './server-address.js'

/** Per-server health, as returned by {@link MemcachedClient.health}. */
export interface ServerHealth {
  readonly server: string
  readonly state: ConnectionState
  readonly identity: ServerIdentity | null
  readonly lastError: Error | null
}

export interface MemcachedClientOptions extends ConnectionOptions {
  /** Parsed server addresses (see `parseServerList`). */
  servers: readonly ServerAddress[]
}

/**
 * Events (each with the server's {@link Connection} first): `state`, `ready`, `down`, `restart`.
 */
export class MemcachedClient extends EventEmitter {
  readonly connections: readonly Connection[]
  readonly #ring: KetamaRing | null

  constructor(options: MemcachedClientOptions) {
    super()
    if (!options.servers || options.servers.length === 0) throw new InvalidArgumentError('servers must list at least one server')
    this.connections = options.servers.map((address) => {
      const c = new Connection(address, options)
      c.on('state', (s: ConnectionState) => this.emit('state', c, s))
      c.on('ready', (id: ServerIdentity, info: { restarted: boolean }) => this.emit('ready', c, id, info))
      c.on('down', (err: Error) => this.emit('down', c, err))
      c.on('restart', (prev: ServerIdentity, next: ServerIdentity) => this.emit('restart', c, prev, next))
      return c
    })
    this.#ring = this.connections.length > 1 ? new KetamaRing(options.servers.map(formatAddress)) : null
  }

  /** The connection of the server that owns `key`. Never another one, even when that server is down. */
  connectionFor(key: WireKey): Connection {
    if (!this.#ring) return this.connections[0] as Connection
    return this.connections[this.#ring.serverFor(decodeWireKey(key.wire, key.base64))] as Connection
  }

  /** Connects to every server; resolves when all are ready, rejects with the first failure. */
  async connect(): Promise<void> {
    await Promise.all(this.connections.map((c) => c.connect()))
  }

  health(): ServerHealth[] {
    return this.connections.map((c) => ({ server: c.name, state: c.state, identity: c.identity, lastError: c.lastError }))
  }

  async close(): Promise<void> {
    await Promise.all(this.connections.map((c) => c.close()))
  }
}
