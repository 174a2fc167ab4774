import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { describe, test } from 'node:test'

import fc from 'fast-check'

import { MemcachedLockError, ProtocolError } from '../../src/errors.js'
import { ReplyDecoder, type Reply } from '../../src/protocol/decoder.js'

/** Every reply the library can receive, with the decoded form it must produce. */
const CORPUS: { wire: string; reply: Reply }[] = [
  { wire: 'HD\r\n', reply: { kind: 'meta', status: 'HD', flags: {} } },
  { wire: 'HD c1\r\n', reply: { kind: 'meta', status: 'HD', flags: { c: '1' } } },
  { wire: 'HD c9 t400\r\n', reply: { kind: 'meta', status: 'HD', flags: { c: '9', t: '400' } } },
  { wire: 'HD c2 O123 klock:b\r\n', reply: { kind: 'meta', status: 'HD', flags: { c: '2', O: '123', k: 'lock:b' } } },
  { wire: 'HD c17 kAGxvY2v/YmluIGtleSB3aXRoIHNwYWNlcw== b\r\n', reply: { kind: 'meta', status: 'HD', flags: { c: '17', k: 'AGxvY2v/YmluIGtleSB3aXRoIHNwYWNlcw==', b: '' } } },
  { wire: 'HD t-1\r\n', reply: { kind: 'meta', status: 'HD', flags: { t: '-1' } } },
  { wire: 'NS\r\n', reply: { kind: 'meta', status: 'NS', flags: {} } },
  { wire: 'NS c0 O11\r\n', reply: { kind: 'meta', status: 'NS', flags: { c: '0', O: '11' } } },
  { wire: 'EX\r\n', reply: { kind: 'meta', status: 'EX', flags: {} } },
  { wire: 'EX c0 O14\r\n', reply: { kind: 'meta', status: 'EX', flags: { c: '0', O: '14' } } },
  { wire: 'NF\r\n', reply: { kind: 'meta', status: 'NF', flags: {} } },
  { wire: 'EN\r\n', reply: { kind: 'meta', status: 'EN', flags: {} } },
  { wire: 'EN O13\r\n', reply: { kind: 'meta', status: 'EN', flags: { O: '13' } } },
  { wire: 'MN\r\n', reply: { kind: 'meta', status: 'MN', flags: {} } },
  { wire: 'VA 8 c1 t30\r\nowner-A1\r\n', reply: { kind: 'meta', status: 'VA', flags: { c: '1', t: '30' }, value: Buffer.from('owner-A1') } },
  { wire: 'VA 8 c1 t30 s8 f0\r\nowner-A1\r\n', reply: { kind: 'meta', status: 'VA', flags: { c: '1', t: '30', s: '8', f: '0' }, value: Buffer.from('owner-A1') } },
  { wire: 'VA 0\r\n\r\n', reply: { kind: 'meta', status: 'VA', flags: {}, value: Buffer.alloc(0) } },
  { wire: 'VA 0 c5 O2\r\n\r\n', reply: { kind: 'meta', status: 'VA', flags: { c: '5', O: '2' }, value: Buffer.alloc(0) } },
  { wire: 'VA 10 c3\r\nab\r\nEN\r\ncd\r\n', reply: { kind: 'meta', status: 'VA', flags: { c: '3' }, value: Buffer.from('ab\r\nEN\r\ncd') } },
  { wire: 'VA 2\r\n\r\n\r\n', reply: { kind: 'meta', status: 'VA', flags: {}, value: Buffer.from('\r\n') } },
  { wire: 'VA 4\r\n\xff\x00\n\r\r\n', reply: { kind: 'meta', status: 'VA', flags: {}, value: Buffer.from([0xff, 0x00, 0x0a, 0x0d]) } },
  {
    wire: 'STAT pid 1234\r\nSTAT uptime 2\r\nSTAT time 1795670522\r\nSTAT version 1.6.18\r\nSTAT rusage_user 0.012345\r\nEND\r\n',
    reply: { kind: 'stats', stats: { pid: '1234', uptime: '2', time: '1795670522', version: '1.6.18', rusage_user: '0.012345' } },
  },
  {
    wire: 'STAT evictions on\r\nSTAT temporary_ttl 61\r\nSTAT inter NULL\r\nSTAT empty\r\nSTAT spaced a b c\r\nEND\r\n',
    reply: { kind: 'stats', stats: { evictions: 'on', temporary_ttl: '61', inter: 'NULL', empty: '', spaced: 'a b c' } },
  },
  { wire: 'END\r\n', reply: { kind: 'stats', stats: {} } },
  { wire: 'VERSION 1.6.18\r\n', reply: { kind: 'version', version: '1.6.18' } },
  { wire: 'ERROR\r\n', reply: { kind: 'error', type: 'ERROR', message: '' } },
  { wire: 'CLIENT_ERROR bad command line format\r\n', reply: { kind: 'error', type: 'CLIENT_ERROR', message: 'bad command line format' } },
  { wire: 'CLIENT_ERROR unauthenticated\r\n', reply: { kind: 'error', type: 'CLIENT_ERROR', message: 'unauthenticated' } },
  { wire: 'SERVER_ERROR out of memory storing object\r\n', reply: { kind: 'error', type: 'SERVER_ERROR', message: 'out of memory storing object' } },
  { wire: 'STORED\r\n', reply: { kind: 'word', word: 'STORED' } },
  { wire: 'OK\r\n', reply: { kind: 'word', word: 'OK' } },
]

const WHOLE = Buffer.concat(CORPUS.map((c) => Buffer.from(c.wire, 'latin1')))
const EXPECTED = CORPUS.map((c) => c.reply)

/** A meta reply as a plain record (its flags and value are built on access), for deepEqual. */
function plain(r: Reply): Reply {
  return r.kind === 'meta' ? { kind: 'meta', status: r.status, flags: r.flags, ...(r.value !== undefined && { value: r.value }) } : r
}

function plainAll(replies: Reply[]): Reply[] {
  return replies.map(plain)
}

function feed(chunks: Buffer[], decoder = new ReplyDecoder()): Reply[] {
  const out: Reply[] = []
  for (const chunk of chunks) out.push(...decoder.push(chunk))
  return plainAll(out)
}

/** Feeds `bytes` in the given chunking and expects a ProtocolError (and nothing else). */
function expectProtocolError(chunks: Buffer[], decoder = new ReplyDecoder()): ProtocolError {
  let caught: unknown
  try {
    feed(chunks, decoder)
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof ProtocolError, `expected ProtocolError, got ${caught === undefined ? 'no error' : String(caught)}`)
  assert.equal(caught.code, 'ERR_PROTOCOL')
  assert.equal(caught.name, 'ProtocolError')
  return caught
}

function bytewise(buf: Buffer): Buffer[] {
  return Array.from({ length: buf.length }, (_, i) => buf.subarray(i, i + 1))
}

function b(text: string): Buffer {
  return Buffer.from(text, 'latin1')
}

describe('ReplyDecoder - valid replies', () => {
  for (const c of CORPUS) {
    test(`decoder - decodes ${JSON.stringify(c.wire.length > 40 ? c.wire.slice(0, 40) + '...' : c.wire)} whole and byte by byte`, () => {
      assert.deepEqual(feed([b(c.wire)]), [c.reply])
      const d = new ReplyDecoder()
      const out: Reply[] = []
      const bytes = bytewise(b(c.wire))
      bytes.forEach((byte, i) => {
        out.push(...d.push(byte))
        // nothing may come out before the last byte
        if (i < bytes.length - 1) assert.equal(out.length, 0, `reply emitted early at byte ${i}`)
      })
      assert.deepEqual(plainAll(out), [c.reply])
      assert.equal(d.midReply, false)
    })
  }

  test('decoder - the whole corpus in one chunk', () => {
    assert.deepEqual(feed([WHOLE]), EXPECTED)
  })

  test('decoder - the whole corpus byte by byte', () => {
    assert.deepEqual(feed(bytewise(WHOLE)), EXPECTED)
  })

  test('decoder - the whole corpus split at every point', () => {
    for (let i = 0; i <= WHOLE.length; i++) {
      assert.deepEqual(feed([WHOLE.subarray(0, i), WHOLE.subarray(i)]), EXPECTED, `split at ${i}`)
    }
  })

  test('decoder - the whole corpus split at every pair of points (sampled)', () => {
    for (let i = 0; i <= WHOLE.length; i += 7) {
      for (let j = i; j <= WHOLE.length; j += 5) {
        assert.deepEqual(feed([WHOLE.subarray(0, i), WHOLE.subarray(i, j), WHOLE.subarray(j)]), EXPECTED, `split at ${i}, ${j}`)
      }
    }
  })

  test('decoder - property: random splits of the corpus decode the same', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: WHOLE.length - 1 }), { maxLength: 60 }), (cuts) => {
        const points = [0, ...cuts.sort((x, y) => x - y), WHOLE.length]
        const chunks = points.slice(1).map((end, i) => WHOLE.subarray(points[i], end))
        assert.deepEqual(feed(chunks), EXPECTED)
      }),
      { numRuns: 500 },
    )
  })

  test('decoder - property: random splits read through one reused buffer decode the same', () => {
    // what the connection does: every read lands in the same buffer, overwritten by the next
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: WHOLE.length - 1 }), { maxLength: 60 }), (cuts) => {
        const points = [0, ...cuts.sort((x, y) => x - y), WHOLE.length]
        const buffer = Buffer.alloc(WHOLE.length)
        const d = new ReplyDecoder()
        const out: Reply[] = []
        for (let k = 1; k < points.length; k++) {
          const n = WHOLE.copy(buffer, 0, points[k - 1], points[k])
          d.push(buffer.subarray(0, n), out)
          buffer.fill(0x58)
        }
        assert.deepEqual(plainAll(out), EXPECTED)
      }),
      { numRuns: 500 },
    )
  })

  test('decoder - property: random replies in random order and random splits', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: CORPUS.length - 1 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
        (picks, sizes) => {
          const stream = Buffer.concat(picks.map((i) => b(CORPUS[i]!.wire)))
          const chunks: Buffer[] = []
          for (let pos = 0, k = 0; pos < stream.length; k++) {
            const size = sizes[k % sizes.length]!
            chunks.push(stream.subarray(pos, pos + size))
            pos += size
          }
          assert.deepEqual(
            feed(chunks),
            picks.map((i) => CORPUS[i]!.reply),
          )
        },
      ),
      { numRuns: 300 },
    )
  })

  test('decoder - midReply tracks a started reply', () => {
    const d = new ReplyDecoder()
    assert.equal(d.midReply, false)
    assert.deepEqual(plainAll(d.push(b('HD c1\r\nVA 3\r\nab'))), [{ kind: 'meta', status: 'HD', flags: { c: '1' } }])
    assert.equal(d.midReply, true)
    assert.equal(d.push(b('c\r\n')).length, 1)
    assert.equal(d.midReply, false)
    assert.deepEqual(plainAll(d.push(b('STAT pid 1\r\n'))), [])
    assert.equal(d.midReply, true, 'inside a STAT block')
    assert.equal(d.push(b('END\r\n')).length, 1)
    assert.equal(d.midReply, false)
  })

  test('decoder - an empty chunk is harmless', () => {
    const d = new ReplyDecoder()
    assert.deepEqual(plainAll(d.push(Buffer.alloc(0))), [])
    assert.deepEqual(plainAll(d.push(b('HD'))), [])
    assert.deepEqual(plainAll(d.push(Buffer.alloc(0))), [])
    assert.deepEqual(plainAll(d.push(b('\r\n'))), [{ kind: 'meta', status: 'HD', flags: {} }])
  })

  test('decoder - the opaque token is read at once; flags and value, built on access, are the same each time', () => {
    const [hd, va, en] = new ReplyDecoder().push(b('HD c7 O12 b\r\nVA 3 t-1 O13\r\nabc\r\nEN\r\n'))
    assert.ok(hd?.kind === 'meta' && va?.kind === 'meta' && en?.kind === 'meta')
    assert.equal(hd.opaque, 12)
    assert.equal(va.opaque, 13)
    assert.equal(en.opaque, undefined)
    const [word, long, empty] = new ReplyDecoder().push(b('HD Oab\r\nHD O1234567890\r\nHD O c1\r\n'))
    assert.deepEqual([word, long, empty].map((r) => r?.kind === 'meta' && r.opaque), [-1, -1, -1], 'a token that is not 1-9 digits is -1')
    assert.equal(hd.flags, hd.flags, 'one record, built once')
    assert.deepEqual(hd.flags, { c: '7', O: '12', b: '' })
    assert.equal(va.value, va.value, 'one view, made once')
    assert.equal(va.value?.toString(), 'abc')
    assert.equal(hd.value, undefined)
    assert.deepEqual(JSON.parse(JSON.stringify(va)), { kind: 'meta', status: 'VA', flags: { t: '-1', O: '13' }, value: { type: 'Buffer', data: [97, 98, 99] } })
    assert.equal(inspect(hd), inspect({ kind: 'meta', status: 'HD', flags: { c: '7', O: '12', b: '' } }), 'console.log shows the plain record')
    const [valueFirst] = new ReplyDecoder().push(b('VA 2 c9 t30 k0123456789abcdef\r\nxy\r\n'))
    assert.ok(valueFirst?.kind === 'meta')
    assert.equal(valueFirst.value?.toString(), 'xy')
    assert.deepEqual(valueFirst.flags, { c: '9', t: '30', k: '0123456789abcdef' }, 'flags read after the value')
  })

  test('decoder - a chunk may be reused once push returns (partial replies and large values are copied)', () => {
    // the connection reads every chunk into the same buffer: feed the stream through one buffer
    const big = 'z'.repeat(3000)
    const stream = b(`HD c1 O1\r\nVA 5 O2\r\nhello\r\nVA ${big.length} O3\r\n${big}\r\nHD O4\r\n`)
    for (const size of [1, 7, 64, 1000]) {
      const buffer = Buffer.alloc(size)
      const d = new ReplyDecoder()
      const out: Reply[] = []
      for (let pos = 0; pos < stream.length; pos += size) {
        const n = stream.copy(buffer, 0, pos, Math.min(pos + size, stream.length))
        d.push(buffer.subarray(0, n), out)
        buffer.fill(0x21) // the next read overwrites the buffer
      }
      assert.deepEqual(
        plainAll(out),
        [
          { kind: 'meta', status: 'HD', flags: { c: '1', O: '1' } },
          { kind: 'meta', status: 'VA', flags: { O: '2' }, value: Buffer.from('hello') },
          { kind: 'meta', status: 'VA', flags: { O: '3' }, value: Buffer.from(big) },
          { kind: 'meta', status: 'HD', flags: { O: '4' } },
        ],
        `reads of ${size} bytes`,
      )
    }
  })

  test('decoder - the value does not alias the input chunk', () => {
    const chunk = b('VA 3\r\nabc\r\n')
    const [reply] = new ReplyDecoder().push(chunk)
    chunk.fill(0)
    assert.ok(reply && reply.kind === 'meta')
    assert.equal(reply.value?.toString(), 'abc')
  })

  test('decoder - values of one chunk are exact, independent of the chunk and of each other', () => {
    const chunk = b('VA 3 O1\r\nabc\r\nHD O2\r\nVA 2 O3\r\nde\r\nVA 0 O4\r\n\r\n')
    const replies = new ReplyDecoder().push(chunk)
    chunk.fill(0)
    const values = replies.map((r) => (r.kind === 'meta' ? r.value?.toString() : undefined))
    assert.deepEqual(values, ['abc', undefined, 'de', ''])
    const first = replies[0]
    assert.ok(first?.kind === 'meta' && first.value)
    first.value.fill(0x7a)
    assert.equal(replies[2]?.kind === 'meta' && replies[2].value?.toString(), 'de', 'writing into one value leaves the next alone')
  })

  test('decoder - many small and some large values in one chunk all come out exact', () => {
    const values = Array.from({ length: 300 }, (_, i) => Buffer.alloc(i % 50 === 0 ? 5000 : (i * 7) % 200, 0x41 + (i % 26)))
    const chunk = Buffer.concat(values.flatMap((v, i) => [b(`VA ${v.length} O${i}\r\n`), v, b('\r\n')]))
    const replies = new ReplyDecoder().push(chunk)
    chunk.fill(0)
    assert.equal(replies.length, values.length)
    replies.forEach((r, i) => {
      assert.ok(r.kind === 'meta')
      assert.deepEqual(r.value, values[i], `value ${i}`)
      if ((r.value as Buffer).length > 4096) assert.equal(r.value?.buffer.byteLength, r.value?.length, 'a large value (above the pool size) has its own memory')
    })
  })

  test('decoder - a large value is gathered across chunks, then checked', () => {
    const d = new ReplyDecoder()
    const value = Buffer.alloc(100_000, 0x62)
    assert.deepEqual(plainAll(d.push(b('HD O1\r\nVA 100000 c9\r\n'))), [{ kind: 'meta', status: 'HD', flags: { O: '1' } }])
    for (let i = 0; i < value.length; i += 4096) {
      assert.deepEqual(plainAll(d.push(value.subarray(i, i + 4096))), [])
      assert.equal(d.midReply, true)
    }
    const out = d.push(b('\r\nEN\r\n'))
    assert.equal(out.length, 2)
    assert.ok(out[0]?.kind === 'meta')
    assert.deepEqual(out[0].value, value)
    assert.deepEqual(plain(out[1]!), { kind: 'meta', status: 'EN', flags: {} })
    assert.equal(d.midReply, false)
    // the same value, ended by garbage instead of CRLF
    const bad = new ReplyDecoder()
    bad.push(b('VA 100000\r\n'))
    bad.push(value)
    expectProtocolError([b('XY')], bad)
  })

  test('decoder - values up to the limit are accepted', () => {
    const d = new ReplyDecoder({ maxValueBytes: 16 })
    const [reply] = d.push(b(`VA 16\r\n${'x'.repeat(16)}\r\n`))
    assert.ok(reply && reply.kind === 'meta')
    assert.equal(reply.value?.length, 16)
  })

  test('decoder - a large value arriving in many chunks', () => {
    const value = Buffer.alloc(200_000, 0x61)
    const stream = Buffer.concat([b(`VA ${value.length} c1\r\n`), value, b('\r\nHD\r\n')])
    const chunks: Buffer[] = []
    for (let i = 0; i < stream.length; i += 1000) chunks.push(stream.subarray(i, i + 1000))
    const out = feed(chunks)
    assert.equal(out.length, 2)
    assert.ok(out[0]?.kind === 'meta')
    assert.deepEqual(out[0].value, value)
  })
})

describe('ReplyDecoder - garbage', () => {
  const BAD: [string, string, { maxLineBytes?: number; maxValueBytes?: number }?][] = [
    ['a line without CR', 'HD\n'],
    ['a bare LF', '\n'],
    ['an empty line', '\r\n'],
    ['a CR inside a line', 'HD\rc1\r\n'],
    ['a VA without a length', 'VA\r\n'],
    ['a VA with a word for a length', 'VA abc\r\nabc\r\n'],
    ['a VA with a negative length', 'VA -1\r\n\r\n'],
    ['a VA with an 11-digit length', 'VA 12345678901\r\n'],
    ['a VA with a fractional length', 'VA 1.5\r\nx\r\n'],
    ['a VA whose data is not followed by CRLF', 'VA 2\r\nabXY'],
    ['a VA whose data is followed by LF only', 'VA 2\r\nab\nHD\r\n'],
    ['a VA that is shorter than announced', 'VA 5\r\nab\r\nHD\r\n'],
    ['a value over the limit', 'VA 11\r\n', { maxValueBytes: 10 }],
    ['a value over the default 1 MiB limit', 'VA 1048577\r\n'],
    ['an overlong line without LF', 'HD ' + 'c'.repeat(200), { maxLineBytes: 100 }],
    ['an overlong line with CRLF', 'HD k' + 'x'.repeat(200) + '\r\n', { maxLineBytes: 100 }],
    ['an unknown word', 'HELLO\r\n'],
    ['a lowercase status', 'hd\r\n'],
    ['a classic VALUE reply', 'VALUE k 0 1\r\nx\r\nEND\r\n'],
    ['END with trailing text', 'END now\r\n'],
    ['ERROR with trailing text', 'ERROR what\r\n'],
    ['VERSION without a version', 'VERSION\r\n'],
    ['STORED with trailing text', 'STORED 1\r\n'],
    ['a flag starting with a digit', 'HD 1c\r\n'],
    ['a flag that is a symbol', 'HD -1\r\n'],
    ['an empty flag (double space)', 'HD  c1\r\n'],
    ['a trailing space', 'HD \r\n'],
    ['a flag with a control char', 'HD c\x01\r\n'],
    ['a flag with a non-ASCII byte', 'HD k\xe9\r\n'],
    ['a VA flag starting with a digit', 'VA 1 9c\r\nx\r\n'],
    ['a non-STAT line inside stats', 'STAT pid 1\r\nHD\r\n'],
    ['a STAT line without a name', 'STAT \r\nEND\r\n'],
    ['a STAT line alone', 'STAT\r\nEND\r\n'],
    ['binary garbage', '\x00\x01\x02\xff\r\n'],
    ['a binary protocol header', '\x81\x00\x00\x00\x00\x00\x00\x00\r\n'],
  ]

  for (const [label, text, limits] of BAD) {
    test(`decoder - ${label} is a ProtocolError, whole and byte by byte`, () => {
      expectProtocolError([b(text)], new ReplyDecoder(limits))
      expectProtocolError(bytewise(b(text)), new ReplyDecoder(limits))
    })
  }

  test('decoder - replies decoded before garbage in the same chunk are handed over in out', () => {
    const d = new ReplyDecoder()
    assert.deepEqual(plainAll(d.push(b('HD\r\n'))), [{ kind: 'meta', status: 'HD', flags: {} }])
    const out: Reply[] = []
    assert.throws(() => d.push(b('MN\r\nVA 1 O2\r\nx\r\nGARBAGE\r\nEN\r\n'), out), ProtocolError)
    assert.deepEqual(plainAll(out), [
      { kind: 'meta', status: 'MN', flags: {} },
      { kind: 'meta', status: 'VA', flags: { O: '2' }, value: Buffer.from('x') },
    ])
  })

  test('decoder - push appends to the given array and returns it', () => {
    const out: Reply[] = [{ kind: 'word', word: 'OK' }]
    assert.equal(new ReplyDecoder().push(b('MN\r\n'), out), out)
    assert.equal(out.length, 2)
  })

  test('decoder - the error names the offending line', () => {
    const err = expectProtocolError([b('HELLO world\r\n')])
    assert.match(err.message, /HELLO world/)
    assert.ok(err instanceof MemcachedLockError)
  })

  test('decoder - a very long garbage line is clipped in the message', () => {
    const err = expectProtocolError([b('X'.repeat(5000) + '\r\n')])
    assert.ok(err.message.length < 300, `message of ${err.message.length} characters`)
  })

  test('decoder - an overlong line is refused before its end arrives', () => {
    const d = new ReplyDecoder({ maxLineBytes: 64 })
    assert.deepEqual(plainAll(d.push(b('HD ' + 'c'.repeat(40)))), [])
    expectProtocolError([b('c'.repeat(40))], d)
  })

  test('decoder - an oversized value is refused before its data arrives', () => {
    expectProtocolError([b('VA 2000000\r\n')])
  })

  test('decoder - refuses all input after failing', () => {
    const d = new ReplyDecoder()
    const first = expectProtocolError([b('NOPE\r\n')], d)
    for (const more of ['HD\r\n', '', 'MN\r\n']) {
      const err = expectProtocolError([b(more)], d)
      assert.match(err.message, /already failed/)
      assert.equal(err.cause, first)
    }
  })

  test('decoder - property: random bytes give replies or a ProtocolError, never another error', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const d = new ReplyDecoder({ maxLineBytes: 128, maxValueBytes: 256 })
        for (const chunk of chunks) {
          try {
            d.push(Buffer.from(chunk))
          } catch (err) {
            assert.ok(err instanceof ProtocolError, `unexpected ${String(err)}`)
            return
          }
        }
      }),
      { numRuns: 2000 },
    )
  })

  test('decoder - property: random lines built from reply-like tokens never crash', () => {
    const token = fc.constantFrom('HD', 'VA', 'EN', 'MN', 'NS', 'STAT', 'END', 'VERSION', 'ERROR', 'OK', 'c1', 'O7', 't-1', '5', '0', '-1', 'x', ' ', '', '\r', '\n', '\r\n', '\x00', 'k\xff')
    fc.assert(
      fc.property(fc.array(token, { maxLength: 30 }), fc.integer({ min: 1, max: 16 }), (tokens, size) => {
        const stream = b(tokens.join(''))
        const d = new ReplyDecoder({ maxLineBytes: 64, maxValueBytes: 64 })
        try {
          for (let i = 0; i < stream.length; i += size) d.push(stream.subarray(i, i + size))
        } catch (err) {
          assert.ok(err instanceof ProtocolError, `unexpected ${String(err)}`)
        }
      }),
      { numRuns: 2000 },
    )
  })

  test('decoder - property: a valid stream with one byte corrupted gives replies or a ProtocolError', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: WHOLE.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 32 }), (pos, byte, size) => {
        const stream = Buffer.from(WHOLE)
        stream[pos] = byte
        const d = new ReplyDecoder()
        try {
          for (let i = 0; i < stream.length; i += size) d.push(stream.subarray(i, i + size))
        } catch (err) {
          assert.ok(err instanceof ProtocolError, `unexpected ${String(err)}`)
        }
      }),
      { numRuns: 2000 },
    )
  })
})
