/**
 * Incremental reply decoder: feed it the byte stream in chunks of any size, get whole replies
 * out, in order. Pure (no I/O, no timers). Anything that is not a reply memcached can send
 * raises {@link ProtocolError}, after which the decoder refuses further input: the stream is
 * out of sync and the connection must be closed.
 */
import { ProtocolError } from '../errors.js'

/** Status of a meta command reply. */
export type MetaStatus = 'HD' | 'VA' | 'EN' | 'NS' | 'EX' | 'NF' | 'MN'

/** Flags returned with a meta reply, by letter: `{ c: '42', t: '30', O: '7', k: 'key', b: '' }`. */
export type MetaFlags = Record<string, string>

/**
 * A reply to `ms`, `mg`, `md`, `ma` or `mn`. `value` is set for `VA`. `opaque` is the `O` flag,
 * read as the reply is decoded (the connection matches every reply by it); `flags` and `value`
 * are built on first access (most replies are judged by their status alone), so they are
 * getters: `{ ...reply }` and `structuredClone(reply)` do not copy them, `reply.toJSON()` (and
 * `JSON.stringify`, `console.log`) give the plain record. Read what you need and drop the
 * reply: it holds a copy of the bytes it came with (its own, or at most 16 KiB shared with the
 * replies next to it), as a value taken from it does.
 */
export interface MetaReply {
  readonly kind: 'meta'
  readonly status: MetaStatus
  readonly flags: MetaFlags
  readonly value?: Buffer
  /** The `O` token as a number (this client's tokens are numbers); -1 when it is not one. */
  readonly opaque?: number
}

/** The `STAT name value` lines up to `END`. */
export interface StatsReply {
  readonly kind: 'stats'
  readonly stats: Record<string, string>
}

export interface VersionReply {
  readonly kind: 'version'
  readonly version: string
}

/** A one-word classic reply: `STORED` (e.g. to `set auth`), `OK` (to `watch`), ... */
export interface WordReply {
  readonly kind: 'word'
  readonly word: 'STORED' | 'NOT_STORED' | 'OK' | 'EXISTS' | 'NOT_FOUND' | 'DELETED' | 'TOUCHED' | 'RESET'
}

/** `ERROR`, `CLIENT_ERROR <msg>` or `SERVER_ERROR <msg>`. */
export interface ErrorReply {
  readonly kind: 'error'
  readonly type: 'ERROR' | 'CLIENT_ERROR' | 'SERVER_ERROR'
  readonly message: string
}

export type Reply = MetaReply | StatsReply | VersionReply | WordReply | ErrorReply

export interface DecoderLimits {
  /** Longest reply line accepted, in bytes. @default 8192 */
  maxLineBytes?: number
  /** Largest `VA` value accepted, in bytes. @default 1048576 */
  maxValueBytes?: number
}

const LF = 0x0a
const CR = 0x0d
const SP = 0x20
const EMPTY = Buffer.alloc(0)
/** Values up to this many bytes share a copy of at most SHARED_COPY bytes; larger ones get their own. */
const SMALL_VALUE = 1024
const SHARED_COPY = 16384
const WORDS = new Set(['STORED', 'NOT_STORED', 'OK', 'EXISTS', 'NOT_FOUND', 'DELETED', 'TOUCHED', 'RESET'])

/**
 * Meta replies, the hot path, are parsed from the bytes in JS: the line end is found with
 * `Buffer#indexOf` and the status, length and flags are read byte by byte. What a meta reply
 * keeps (its flags text, a small value) is in one copy of the bytes, made once per push and
 * shared by the replies it holds; text is made only from the bytes a reader asks for (a reply's
 * flags, an error message, a line that is not a meta reply). Until session 11 each push turned
 * all its bytes into a latin1 string as well, which cost one more copy of every chunk.
 * The decoder never keeps the caller's chunk past `push`: the caller may reuse its memory (the
 * connection reads every chunk into one buffer).
 */
export class ReplyDecoder {
  readonly #maxLine: number
  readonly #maxValue: number
  #buf: Buffer = EMPTY
  #pos = 0
  #stats: Record<string, string> | null = null
  /** A `VA` whose value is still arriving: its bytes so far, and how many the reply needs in all. */
  #parts: Buffer[] = []
  #partsBytes = 0
  #need = 0
  /**
   * The copy of bytes of this push that its meta replies keep (flags, small values), and the
   * offset in `#buf` it starts at.
   */
  #copy: Buffer | null = null
  #copyFrom = 0
  #failed: ProtocolError | null = null

  constructor(limits: DecoderLimits = {}) {
    this.#maxLine = limits.maxLineBytes ?? 8192
    this.#maxValue = limits.maxValueBytes ?? 1024 * 1024
  }

  /** True while a reply has started but not ended (bytes or STAT lines are waiting). */
  get midReply(): boolean {
    return this.#pos < this.#buf.length || this.#stats !== null || this.#need > 0
  }

  /**
   * Feeds bytes; returns the replies they completed, in order. Throws {@link ProtocolError} on
   * garbage. Replies are appended to `out` as they are decoded, so when it throws, `out` still
   * holds the good replies that came before the garbage (their requests did get an answer).
   */
  push(chunk: Buffer, out: Reply[] = []): Reply[] {
    if (this.#failed) throw new ProtocolError('decoder already failed; the connection must be closed', { cause: this.#failed })
    if (this.#need > 0) {
      // a large value: gather its chunks and join them once, not once per chunk
      this.#parts.push(Buffer.from(chunk))
      this.#partsBytes += chunk.length
      if (this.#partsBytes < this.#need) return out
      this.#buf = Buffer.concat(this.#parts, this.#partsBytes)
      this.#parts = []
      this.#partsBytes = 0
      this.#need = 0
    } else {
      this.#buf = this.#pos < this.#buf.length ? Buffer.concat([this.#buf.subarray(this.#pos), chunk]) : chunk
    }
    this.#pos = 0
    try {
      for (;;) {
        const reply = this.#next()
        if (reply === undefined) break
        if (reply !== null) out.push(reply)
      }
    } catch (err) {
      this.#failed = err as ProtocolError
      throw err
    } finally {
      this.#copy = null
    }
    // what is left is the start of a reply: keep a copy, not a view of the caller's chunk
    this.#buf = this.#pos >= this.#buf.length ? EMPTY : Buffer.from(this.#buf.subarray(this.#pos))
    this.#pos = 0
    return out
  }

  /** Parses one reply: a reply, `null` for a consumed STAT line, `undefined` when more bytes are needed. */
  #next(): Reply | null | undefined {
    const buf = this.#buf
    const start = this.#pos
    const lf = buf.indexOf(LF, start)
    if (lf === -1) {
      if (buf.length - start > this.#maxLine) throw new ProtocolError(`reply line longer than ${this.#maxLine} bytes`)
      return undefined
    }
    if (lf - start > this.#maxLine) throw new ProtocolError(`reply line longer than ${this.#maxLine} bytes`)
    if (lf === start || buf[lf - 1] !== CR) throw new ProtocolError(`reply line not ended by CRLF: ${clip(buf.toString('latin1', start, lf))}`)
    if (this.#stats === null) {
      const fast = this.#meta(buf, start, lf)
      if (fast !== null) return fast
    }
    const line = buf.toString('latin1', start, lf - 1)

    if (this.#stats !== null) {
      if (line === 'END') {
        const stats = this.#stats
        this.#stats = null
        this.#pos = lf + 1
        return { kind: 'stats', stats }
      }
      this.#addStat(line)
      this.#pos = lf + 1
      return null
    }

    const sp = line.indexOf(' ')
    const head = sp === -1 ? line : line.slice(0, sp)
    this.#pos = lf + 1
    if (head === 'STAT') {
      this.#stats = {}
      this.#addStat(line)
      return null
    }
    if (head === 'END' && sp === -1) return { kind: 'stats', stats: {} }
    if (head === 'VERSION' && sp !== -1) return { kind: 'version', version: line.slice(sp + 1) }
    if (head === 'ERROR' && sp === -1) return { kind: 'error', type: 'ERROR', message: '' }
    if (head === 'CLIENT_ERROR' || head === 'SERVER_ERROR') {
      return { kind: 'error', type: head, message: sp === -1 ? '' : line.slice(sp + 1) }
    }
    if (sp === -1 && WORDS.has(head)) return { kind: 'word', word: head as WordReply['word'] }
    throw new ProtocolError(`unexpected reply line: ${clip(line)}`)
  }

  /**
   * The hot path: a meta reply (`HD`, `VA <len>`, `NS`...) parsed in place. Returns null when the
   * line is not a meta reply (the general path decides), undefined when a `VA` value is still incomplete.
   */
  #meta(buf: Buffer, start: number, lf: number): MetaReply | undefined | null {
    const end = lf - 1 // the CR
    if (end - start < 2) return null
    const after = start + 2 === end ? CR : buf[start + 2]
    if (after !== SP && after !== CR) return null
    const status = metaStatus(buf[start] as number, buf[start + 1] as number)
    if (status === null) return null
    if (status !== 'VA') {
      const opaque = checkFlags(buf, start + 2, end)
      this.#pos = lf + 1
      return this.#reply(status, opaque, start + 2, end, undefined, 0, -1)
    }
    let i = start + 3
    let len = 0
    const digitsFrom = i
    for (; i < end; i++) {
      const d = buf[i] as number
      if (d < 0x30 || d > 0x39) break
      len = len * 10 + (d - 0x30)
    }
    if (i === digitsFrom || i - digitsFrom > 10 || (i < end && buf[i] !== SP)) {
      throw new ProtocolError(`bad VA length: ${clip(buf.toString('latin1', start, end))}`)
    }
    if (len > this.#maxValue) throw new ProtocolError(`value of ${len} bytes is larger than the ${this.#maxValue}-byte limit`)
    const dataStart = lf + 1
    const dataEnd = dataStart + len
    if (buf.length < dataEnd + 2) {
      // the value is still arriving: gather its bytes, parse again once all are here
      this.#parts = [Buffer.from(buf.subarray(start))]
      this.#partsBytes = buf.length - start
      this.#need = dataEnd + 2 - start
      this.#buf = EMPTY
      this.#pos = 0
      return undefined
    }
    if (buf[dataEnd] !== CR || buf[dataEnd + 1] !== LF) throw new ProtocolError('VA value not followed by CRLF')
    const opaque = checkFlags(buf, i, end)
    this.#pos = dataEnd + 2
    if (len > SMALL_VALUE) {
      const own = Buffer.allocUnsafe(len)
      buf.copy(own, 0, dataStart, dataEnd)
      return this.#reply('VA', opaque, i, end, own, 0, -1)
    }
    return this.#reply('VA', opaque, i, end, undefined, dataStart, dataEnd)
  }

  /**
   * The reply whose flags are bytes `from..end` of `#buf` and whose value is `own` (a large value's
   * own memory) or bytes `valueFrom..valueTo` (a small one; `valueTo` -1 when there is none). Flags
   * and a small value are kept in the shared copy: a small value is a view into it (one allocation
   * for many values, not one each; never a view of the caller's chunk; a kept value pins at most
   * SHARED_COPY bytes). A reply with no flags and no small value keeps no bytes, and the copy made
   * for a large value's flags does not take in the value.
   */
  #reply(
    status: MetaStatus,
    opaque: number | undefined,
    from: number,
    end: number,
    own: Buffer | undefined,
    valueFrom: number,
    valueTo: number,
  ): MetaReply {
    const small = valueTo >= 0
    if (!small && end === from) return new DecodedMetaReply(status, opaque, null, 0, 0, own, 0, -1)
    const copy = this.#copyOf(from, small ? valueTo : end, own === undefined ? this.#buf.length : end)
    const at = this.#copyFrom
    return new DecodedMetaReply(status, opaque, copy, from - at, end - at, own, small ? valueFrom - at : 0, small ? valueTo - at : -1)
  }

  /**
   * The copy holding bytes `from` to `to` of `#buf`: this push's copy when it holds them, or a
   * new one from `from`, which also takes in the bytes after `to` (up to `limit`, at most
   * SHARED_COPY bytes in all) for the replies that follow.
   */
  #copyOf(from: number, to: number, limit: number): Buffer {
    let copy = this.#copy
    if (copy === null || from < this.#copyFrom || to > this.#copyFrom + copy.length) {
      const size = Math.max(to - from, Math.min(limit - from, SHARED_COPY))
      copy = this.#copy = Buffer.allocUnsafe(size)
      this.#buf.copy(copy, 0, from, from + size)
      this.#copyFrom = from
    }
    return copy
  }

  #addStat(line: string): void {
    const m = /^STAT (\S+)(?: (.*))?$/.exec(line)
    if (!m) throw new ProtocolError(`bad STAT line: ${clip(line)}`)
    ;(this.#stats as Record<string, string>)[m[1] as string] = m[2] ?? ''
  }
}

function metaStatus(a: number, b: number): MetaStatus | null {
  switch ((a << 8) | b) {
    case 0x4844:
      return 'HD'
    case 0x5641:
      return 'VA'
    case 0x454e:
      return 'EN'
    case 0x4e53:
      return 'NS'
    case 0x4558:
      return 'EX'
    case 0x4e46:
      return 'NF'
    case 0x4d4e:
      return 'MN'
    default:
      return null
  }
}

/**
 * A decoded meta reply. The flags are checked as the reply is decoded (garbage fails the decode,
 * not a later read) and only the `O` token is read then; the record of flags and the value's
 * view are made on first access, from the copy of the bytes the reply holds (shared with the
 * replies of the same push, at most SHARED_COPY bytes, or the reply's own).
 */
class DecodedMetaReply implements MetaReply {
  readonly kind = 'meta'
  readonly status: MetaStatus
  readonly opaque: number | undefined
  /** The bytes the flags (` c12 t30 O7`, `#flagsFrom..#flagsEnd`) and a small value (`#from..#to`) are in. */
  readonly #bytes: Buffer | null
  readonly #flagsFrom: number
  readonly #flagsEnd: number
  #flags: MetaFlags | null = null
  /** A small value not read yet is `#from..#to` of `#bytes`; `#to` is -1 otherwise. */
  readonly #from: number
  #to: number
  #value: Buffer | undefined

  constructor(
    status: MetaStatus,
    opaque: number | undefined,
    bytes: Buffer | null,
    flagsFrom: number,
    flagsEnd: number,
    value: Buffer | undefined,
    valueFrom: number,
    valueTo: number,
  ) {
    this.status = status
    this.opaque = opaque
    this.#bytes = bytes
    this.#flagsFrom = flagsFrom
    this.#flagsEnd = flagsEnd
    this.#value = value
    this.#from = valueFrom
    this.#to = valueTo
  }

  get flags(): MetaFlags {
    if (this.#flags === null) {
      const bytes = this.#bytes
      this.#flags = bytes === null ? {} : parseFlags(bytes.toString('latin1', this.#flagsFrom, this.#flagsEnd))
    }
    return this.#flags
  }

  get value(): Buffer | undefined {
    if (this.#to >= 0) {
      const bytes = this.#bytes as Buffer
      this.#value = this.#from === 0 && this.#to === bytes.length ? bytes : bytes.subarray(this.#from, this.#to)
      this.#to = -1
    }
    return this.#value
  }

  /** For JSON.stringify and test comparisons: the plain record. */
  toJSON(): { kind: 'meta'; status: MetaStatus; flags: MetaFlags; value?: Buffer } {
    const value = this.value
    return { kind: 'meta', status: this.status, flags: this.flags, ...(value !== undefined && { value }) }
  }

  /** `console.log` and `util.inspect` show the plain record too (not the lazy fields). */
  [Symbol.for('nodejs.util.inspect.custom')](): object {
    return this.toJSON()
  }
}

/**
 * Checks flags ` c12 t30 O7 b` in `bytes` between `from` (a space) and `end`: one ASCII letter
 * each, followed by a token of printable characters. Returns the `O` token as a number (-1 when
 * it is not one of up to 9 digits), if there is one.
 */
function checkFlags(bytes: Buffer, from: number, end: number): number | undefined {
  let opaque: number | undefined
  let i = from
  while (i < end) {
    if (bytes[i] !== SP || i + 1 >= end) throw badFlags('bad flags in reply', bytes, from, end)
    const letter = bytes[++i] as number
    if (!((letter >= 65 && letter <= 90) || (letter >= 97 && letter <= 122))) throw badFlags('bad flag in reply', bytes, from, end)
    let j = i + 1
    for (; j < end; j++) {
      const d = bytes[j] as number
      if (d === SP) break
      if (d < SP || d >= 0x7f) throw badFlags('bad flag in reply', bytes, from, end)
    }
    if (letter === 0x4f) opaque = digits(bytes, i + 1, j)
    i = j
  }
  return opaque
}

function badFlags(what: string, bytes: Buffer, from: number, end: number): ProtocolError {
  return new ProtocolError(`${what}: ${clip(bytes.toString('latin1', from, end))}`)
}

/** The number written in `bytes` from `from` to `end` (1 to 9 decimal digits), or -1. */
function digits(bytes: Buffer, from: number, end: number): number {
  if (end === from || end - from > 9) return -1
  let n = 0
  for (let i = from; i < end; i++) {
    const d = (bytes[i] as number) - 0x30
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return n
}

/** The record of flags already checked by {@link checkFlags}: `' c12 O7 b'` → `{ c: '12', O: '7', b: '' }`. */
function parseFlags(text: string): MetaFlags {
  const flags: MetaFlags = {}
  const end = text.length
  let i = 0
  while (i < end) {
    const next = text.indexOf(' ', i + 2)
    const j = next === -1 ? end : next
    flags[text[i + 1] as string] = text.slice(i + 2, j)
    i = j
  }
  return flags
}

function clip(line: string): string {
  const s = line.length > 80 ? line.slice(0, 80) + '...' : line
  return JSON.stringify(s)
}
