/**
 * Encoders for the memcached commands the library uses. Pure: strings in, the exact request
 * text out. Keys must come from {@link encodeKey}; flags are single tokens such as `T30`, `c`,
 * `C123`, `b`; `opaque` (a non-negative integer) appends `O<opaque>` last. Nothing here touches
 * a socket.
 */
import type { WireKey } from './keys.js'

const CRLF = '\r\n'

/** The flags of the previous request (a copy) and their text: see flagsText. */
let lastFlags: readonly string[] = []
let lastFlagsText = ''

/**
 * ` f1 f2 ...` for `flags`. Callers that send many requests often pass the same flags again
 * (a constant array, or a fresh array of the same tokens), and `Array.prototype.join` costs more
 * than the rest of an `mg` encoding, so the previous flags' text is reused when the tokens are
 * the same. The comparison is with a copy, token by token: an array changed in place since is
 * seen as different.
 */
function flagsText(flags: readonly string[]): string {
  const n = flags.length
  if (n === lastFlags.length) {
    let i = 0
    while (i < n && flags[i] === lastFlags[i]) i++
    if (i === n) return lastFlagsText
  }
  lastFlags = flags.slice()
  return (lastFlagsText = ' ' + flags.join(' '))
}

/** Line ends ` O<n>\r\n` made so far, by `n` (for the tokens below LINE_END_CACHE). */
const LINE_END_CACHE = 65_536
const opaqueLineEnds: string[] = []

/**
 * ` O<opaque>\r\n`, or `\r\n` without an opaque. A connection cycles through a few thousand
 * tokens, so each line end is made once and reused: one string joined per request instead of
 * three (the number's text, ` O` before it, the CRLF after it).
 */
function lineEnd(opaque: number | undefined): string {
  if (opaque === undefined) return CRLF
  if ((opaque >>> 0) === opaque && opaque < LINE_END_CACHE) return (opaqueLineEnds[opaque] ??= ' O' + opaque + CRLF)
  return ' O' + opaque + CRLF
}

/** `<head>[ b][ flags...][ O<opaque>]\r\n`. */
function line(head: string, key: WireKey, flags: readonly string[], opaque: number | undefined): string {
  const s = key.base64 ? head + ' b' : head
  return (flags.length > 0 ? s + flagsText(flags) : s) + lineEnd(opaque)
}

/** `ms <key> <datalen> <flags>*\r\n<data>\r\n`: a meta set. `value` is sent as UTF-8. */
export function encodeMetaSet(key: WireKey, value: string, flags: readonly string[], opaque?: number): string {
  return line('ms ' + key.wire + ' ' + Buffer.byteLength(value, 'utf8'), key, flags, opaque) + value + CRLF
}

/** `mg <key> <flags>*\r\n`: a meta get. */
export function encodeMetaGet(key: WireKey, flags: readonly string[], opaque?: number): string {
  return line('mg ' + key.wire, key, flags, opaque)
}

/** `md <key> <flags>*\r\n`: a meta delete. */
export function encodeMetaDelete(key: WireKey, flags: readonly string[], opaque?: number): string {
  return line('md ' + key.wire, key, flags, opaque)
}

/** `ma <key> <flags>*\r\n`: a meta arithmetic. */
export function encodeMetaArithmetic(key: WireKey, flags: readonly string[], opaque?: number): string {
  return line('ma ' + key.wire, key, flags, opaque)
}

/** `mn\r\n`: meta no-op; the server answers `MN` after every earlier reply (and flushes). */
export function encodeMetaNoop(): string {
  return 'mn' + CRLF
}

/** `version\r\n`. */
export function encodeVersion(): string {
  return 'version' + CRLF
}

/** `stats\r\n` or `stats <group>\r\n` (`settings`, `slabs`...). */
export function encodeStats(group?: 'settings' | 'slabs' | 'items' | 'conns'): string {
  return (group ? 'stats ' + group : 'stats') + CRLF
}

/**
 * `set auth 0 0 <len>\r\n<username> <password>\r\n`: authentication for servers started with
 * `-Y <authfile>` (the ASCII protocol cannot use SASL). The server answers `STORED` or
 * `CLIENT_ERROR authentication failure`.
 */
export function encodeAuth(username: string, password: string): string {
  const data = username + ' ' + password
  return 'set auth 0 0 ' + Buffer.byteLength(data, 'utf8') + CRLF + data + CRLF
}

/** `watch <streams>\r\n`: turns the connection into a log stream (answer `OK`, then one line per event). */
export function encodeWatch(streams: readonly ('mutations' | 'fetchers' | 'evictions')[]): string {
  return 'watch ' + streams.join(' ') + CRLF
}
