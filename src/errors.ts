/**
 * Every error thrown or emitted by memcached-lock is a {@link MemcachedLockError}
 * with a stable `code`. Match on `code` (or `instanceof`), never on `message`.
 *
 * | code | class | meaning |
 * |---|---|---|
 * | `ERR_INVALID_ARGUMENT` | {@link InvalidArgumentError} | a caller passed a value the API does not accept |
 * | `ERR_CONNECTION` | {@link ConnectionError} | a server could not be reached (connect failed, or it is down) |
 * | `ERR_CONNECT_TIMEOUT` | {@link ConnectTimeoutError} | connecting took longer than `connectTimeoutMs` |
 * | `ERR_CONNECTION_CLOSED` | {@link ConnectionClosedError} | the connection broke or was closed while a request was in flight |
 * | `ERR_REQUEST_TIMEOUT` | {@link RequestTimeoutError} | no reply within `requestTimeoutMs` |
 * | `ERR_PROTOCOL` | {@link ProtocolError} | the server sent bytes that are not a valid reply to what was asked |
 * | `ERR_SERVER` | {@link ServerError} | the server answered `SERVER_ERROR`, `CLIENT_ERROR` or `ERROR` |
 * | `ERR_AUTH` | {@link AuthError} | the server refused the username/password |
 * | `ERR_UNSAFE_SERVER` | {@link UnsafeServerError} | the server may evict lock keys and `refuseUnsafeServers` is set |
 * | `ERR_LOCK_TIMEOUT` | {@link LockTimeoutError} | the lock was not acquired within `waitMs` |
 * | `ERR_LOCK_ABORTED` | {@link LockAbortedError} | waiting was cancelled through an `AbortSignal` |
 * | `ERR_LOCK_LOST` | {@link LockLostError} | a lease that was held is no longer held (expired, taken over, server restarted, renewal failed) |
 * | `ERR_LOCK_NOT_HELD` | {@link LockNotHeldError} | release/extend of a handle that was already released |
 * | `ERR_LOCK_UNAVAILABLE` | {@link LockUnavailableError} | the store failed while acquiring, with the `fail` policy |
 * | `ERR_CLOSED` | {@link ClosedError} | the client or lock factory was closed |
 */
export class MemcachedLockError extends Error {
  /** Stable machine-readable code. */
  readonly code: string

  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'MemcachedLockError'
    this.code = code
  }
}

/** A caller passed a value the API does not accept. The message says what was expected and what came. */
export class InvalidArgumentError extends MemcachedLockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_INVALID_ARGUMENT', options)
    this.name = 'InvalidArgumentError'
  }
}

/** A server could not be reached: the connection attempt failed, or the server is marked down. */
export class ConnectionError extends MemcachedLockError {
  /** `host:port` of the server. */
  readonly server: string
  constructor(message: string, server: string, options?: { cause?: unknown; code?: string }) {
    super(message, options?.code ?? 'ERR_CONNECTION', options)
    this.name = 'ConnectionError'
    this.server = server
  }
}

/** Connecting (TCP, TLS handshake and authentication) took longer than `connectTimeoutMs`. */
export class ConnectTimeoutError extends ConnectionError {
  constructor(message: string, server: string, options?: { cause?: unknown }) {
    super(message, server, { ...options, code: 'ERR_CONNECT_TIMEOUT' })
    this.name = 'ConnectTimeoutError'
  }
}

/** The connection broke, or was closed, while this request was in flight or queued. */
export class ConnectionClosedError extends MemcachedLockError {
  readonly server: string
  constructor(message: string, server: string, options?: { cause?: unknown }) {
    super(message, 'ERR_CONNECTION_CLOSED', options)
    this.name = 'ConnectionClosedError'
    this.server = server
  }
}

/** No reply came within `requestTimeoutMs`. The connection is closed afterwards: its stream can no longer be trusted. */
export class RequestTimeoutError extends MemcachedLockError {
  readonly server: string
  readonly timeoutMs: number
  constructor(message: string, server: string, timeoutMs: number, options?: { cause?: unknown }) {
    super(message, 'ERR_REQUEST_TIMEOUT', options)
    this.name = 'RequestTimeoutError'
    this.server = server
    this.timeoutMs = timeoutMs
  }
}

/** The server sent bytes that are not a valid answer to what was asked. The connection is closed. */
export class ProtocolError extends MemcachedLockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_PROTOCOL', options)
    this.name = 'ProtocolError'
  }
}

/** The server answered `SERVER_ERROR ...`, `CLIENT_ERROR ...` or `ERROR`. */
export class ServerError extends MemcachedLockError {
  /** `SERVER_ERROR`, `CLIENT_ERROR` or `ERROR`. */
  readonly kind: 'SERVER_ERROR' | 'CLIENT_ERROR' | 'ERROR'
  readonly server: string
  constructor(kind: 'SERVER_ERROR' | 'CLIENT_ERROR' | 'ERROR', detail: string, server: string, options?: { cause?: unknown }) {
    super(`${server} answered ${kind}${detail ? ` ${detail}` : ''}`, 'ERR_SERVER', options)
    this.name = 'ServerError'
    this.kind = kind
    this.server = server
  }
}

/** The server refused the username/password given in `auth`. */
export class AuthError extends ConnectionError {
  constructor(message: string, server: string, options?: { cause?: unknown }) {
    super(message, server, { ...options, code: 'ERR_AUTH' })
    this.name = 'AuthError'
  }
}

/** The server may evict lock keys before their TTL and `refuseUnsafeServers` is set. */
export class UnsafeServerError extends ConnectionError {
  constructor(message: string, server: string, options?: { cause?: unknown }) {
    super(message, server, { ...options, code: 'ERR_UNSAFE_SERVER' })
    this.name = 'UnsafeServerError'
  }
}

/** The client, store or lock factory was closed. */
export class ClosedError extends MemcachedLockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_CLOSED', options)
    this.name = 'ClosedError'
  }
}

/** The lock was not acquired within `waitMs`. Someone else held it the whole time. */
export class LockTimeoutError extends MemcachedLockError {
  readonly key: string
  readonly waitMs: number
  constructor(key: string, waitMs: number, options?: { cause?: unknown }) {
    super(`lock "${key}" was not acquired within ${waitMs} ms: another owner held it`, 'ERR_LOCK_TIMEOUT', options)
    this.name = 'LockTimeoutError'
    this.key = key
    this.waitMs = waitMs
  }
}

/** Waiting for the lock was cancelled through the caller's `AbortSignal`; `cause` is the signal's reason. */
export class LockAbortedError extends MemcachedLockError {
  readonly key: string
  constructor(key: string, options?: { cause?: unknown }) {
    super(`acquiring lock "${key}" was aborted`, 'ERR_LOCK_ABORTED', options)
    this.name = 'LockAbortedError'
    this.key = key
  }
}

/** Why a lease was lost. */
export type LockLostReason =
  | 'expired' // the local validity ran out before it was renewed
  | 'taken' // the server no longer holds our token (another owner, or the item vanished)
  | 'renewal-failed' // renewal could not reach the server in time
  | 'disconnected' // the connection to the lease's server broke: a restart may have dropped it
  | 'server-restarted' // the server's boot epoch or pid changed
  | 'closed' // the factory was closed while the lease was held

/** A lease that was held is no longer held. Set as the `reason` of a handle's `signal`. */
export class LockLostError extends MemcachedLockError {
  readonly key: string
  readonly reason: LockLostReason
  constructor(key: string, reason: LockLostReason, options?: { cause?: unknown }) {
    super(`lock "${key}" was lost (${reason})`, 'ERR_LOCK_LOST', options)
    this.name = 'LockLostError'
    this.key = key
    this.reason = reason
  }
}

/** `release()` or `extend()` on a handle that was already released or lost. */
export class LockNotHeldError extends MemcachedLockError {
  readonly key: string
  constructor(key: string, detail: string, options?: { cause?: unknown }) {
    super(`lock "${key}" is not held: ${detail}`, 'ERR_LOCK_NOT_HELD', options)
    this.name = 'LockNotHeldError'
    this.key = key
  }
}

/** The store failed while acquiring (server down, timeout...) and the lock's policy is `fail`. `cause` is the store's error. */
export class LockUnavailableError extends MemcachedLockError {
  readonly key: string
  constructor(key: string, options?: { cause?: unknown }) {
    super(`lock "${key}" could not be acquired: the lock store is unavailable`, 'ERR_LOCK_UNAVAILABLE', options)
    this.name = 'LockUnavailableError'
    this.key = key
  }
}
