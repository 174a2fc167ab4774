import { createHash } from 'node:crypto'
import { InvalidArgumentError } from '../errors.js'

/** Longest key memcached accepts, in bytes (also the longest base64 text for `b` keys). */
export const MAX_KEY_BYTES = 250
/** Longest binary key that still fits in 250 base64 characters (verified on 1.6.18: 186 ok, 187 refused). */
export const MAX_BASE64_KEY_BYTES = 186
/** Longest lock name accepted, in UTF-16 code units. Longer names are almost certainly a bug. */
export const MAX_NAME_LENGTH = 65_536

/** How a key travels on the wire. */
export interface WireKey {
  /** The key token as sent: the raw key, or its base64 form when `base64` is set. */
  readonly wire: string
  /** True when the key is sent base64-encoded with the `b` flag. */
  readonly base64: boolean
}

/**
 * Turns `prefix + name` into a key that can never break the command line.
 *
 * - Printable ASCII with no space, at most 250 bytes: sent as is.
 * - Anything else up to 186 bytes (spaces, control characters, non-ASCII): sent base64-encoded
 *   with the `b` flag, so the server stores the exact bytes.
 * - Longer: the bytes `0xFF "h" sha256(prefix + name)` sent base64-encoded. `0xFF` never occurs
 *   in UTF-8, so a hashed key cannot collide with any raw or base64 key.
 *
 * Names must be non-empty, well-formed strings (no lone surrogates, which UTF-8 cannot represent
 * and which would make two names share a key).
 */
export function encodeKey(prefix: string, name: string): WireKey {
  // a non-string prefix would be coerced ("[object Object]") or throw a TypeError (a symbol)
  if (typeof prefix !== 'string') throw new InvalidArgumentError(`prefix must be a string, got ${describe(prefix)}`)
  if (typeof name !== 'string') {
    throw new InvalidArgumentError(`lock key must be a non-empty string, got ${describe(name)}`)
  }
  if (name.length === 0) throw new InvalidArgumentError('lock key must be a non-empty string, got ""')
  if (name.length > MAX_NAME_LENGTH) {
    throw new InvalidArgumentError(`lock key must be at most ${MAX_NAME_LENGTH} characters, got ${name.length}`)
  }
  if (!name.isWellFormed()) {
    throw new InvalidArgumentError('lock key must be a well-formed Unicode string, got one with a lone surrogate')
  }
  const full = prefix + name
  if (full.length <= MAX_KEY_BYTES && isSafeAscii(full)) return { wire: full, base64: false }
  const bytes = Buffer.from(full, 'utf8')
  if (bytes.length <= MAX_BASE64_KEY_BYTES) return { wire: bytes.toString('base64'), base64: true }
  const digest = createHash('sha256').update(bytes).digest()
  return { wire: Buffer.concat([Buffer.from([0xff, 0x68]), digest]).toString('base64'), base64: true }
}

/**
 * A key the library keeps beside a lock (its waiting line, its fence counter): the bytes
 * `0xFF 'l' <tag>` then `prefix + name` (or its SHA-256 when long), base64. No lock name can
 * produce it: `0xFF` never occurs in UTF-8, and hashed lock keys start `0xFF 'h'`.
 */
export function encodeCompanionKey(prefix: string, name: string, tag: string): WireKey {
  const full = Buffer.from(prefix + name, 'utf8')
  const head = Buffer.from([0xff, 0x6c, tag.charCodeAt(0) & 0x7f])
  const body = head.length + full.length <= MAX_BASE64_KEY_BYTES ? full : createHash('sha256').update(full).digest()
  return { wire: Buffer.concat([head, body]).toString('base64'), base64: true }
}

/** Checks a key prefix: a string of at most 128 characters (it may need base64 like any key). */
export function validatePrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length > 128 || !prefix.isWellFormed()) {
    throw new InvalidArgumentError(`prefix must be a well-formed string of at most 128 characters, got ${describe(prefix)}`)
  }
  return prefix
}

/** Decodes a key as the server echoes it (`k` flag), given whether it came with the `b` flag. */
export function decodeWireKey(wire: string, base64: boolean): Buffer {
  return base64 ? Buffer.from(wire, 'base64') : Buffer.from(wire, 'latin1')
}

function isSafeAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f) return false
  }
  return true
}

/** Short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'string') return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : typeof value
}
