export * from './errors.js'
export { Locks, type LocksOptions } from './lock/locks.js'
export { Mutex } from './lock/mutex.js'
export { ReentrantLock, ReentrantHandle, LockOwner, type ReentrantAcquireOptions } from './lock/reentrant-lock.js'
export { LockHandle } from './lock/lock-handle.js'
export { type AcquireOptions, type UnavailablePolicy } from './lock/lock-options.js'
export { SKIP_LOCK, type KeyFunction, type WrapOptions } from './lock/wrap.js'
export { Locked, Serialized, type LocksSource } from './decorators/locked.js'
export {
  Serializer,
  type SerializerOptions,
  type SerializerStats,
  type SerializedContext,
  type SerializedWrapOptions,
} from './lock/serializer.js'
export {
  type LockStore,
  type Lease,
  type LockInfo,
  type OwnerInfo,
  type CreateResult,
  type CreateOptions,
  type Clock,
  type StoreLossReason,
  MIN_TTL_MS,
  MAX_TTL_MS,
} from './store/lock-store.js'
export { MemcachedStore, evictionRisk } from './store/memcached-store.js'
export { serverTtlSeconds } from './store/ttl.js'
export { type MemcachedStoreOptions } from './store/store-options.js'
export { MemoryStore, type MemoryStoreOptions } from './store/memory-store.js'
export { QuorumStore, type QuorumStoreOptions } from './store/quorum-store.js'
export { MemcachedClient, type MemcachedClientOptions, type ServerHealth } from './client/client.js'
export { Connection, type ConnectionOptions, type ConnectionState, type ServerIdentity } from './client/connection.js'
export { parseAddress, parseServerList, formatAddress, type ServerAddress } from './client/server-address.js'
export { encodeKey, type WireKey } from './protocol/keys.js'
