import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'

import fc from 'fast-check'

import { InvalidArgumentError } from '../../src/errors.js'
import {
  MAX_BASE64_KEY_BYTES,
  MAX_KEY_BYTES,
  MAX_NAME_LENGTH,
  decodeWireKey,
  encodeKey,
  validatePrefix,
} from '../../src/protocol/keys.js'

function assertInvalid(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`)
    assert.equal(err.code, 'ERR_INVALID_ARGUMENT')
    assert.equal(err.name, 'InvalidArgumentError')
    if (message) assert.match(err.message, message)
    return true
  })
}

/** The bytes the server stores for a wire key. */
function storedBytes(name: string, prefix = ''): string {
  const k = encodeKey(prefix, name)
  return decodeWireKey(k.wire, k.base64).toString('hex')
}

describe('encodeKey', () => {
  test('keys - safe printable ASCII is sent raw', () => {
    assert.deepEqual(encodeKey('', 'lock:a'), { wire: 'lock:a', base64: false })
    assert.deepEqual(encodeKey('app:', 'orders/42'), { wire: 'app:orders/42', base64: false })
    const allPrintable = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('')
    assert.deepEqual(encodeKey('', allPrintable), { wire: allPrintable, base64: false })
  })

  for (const [label, name] of [
    ['a space', 'a b'],
    ['a CR', 'a\rb'],
    ['a LF', 'a\nb'],
    ['CRLF plus a command', 'x\r\nflush_all'],
    ['a NUL', 'a\0b'],
    ['a tab', 'a\tb'],
    ['another control char', 'a\x01b'],
    ['DEL', 'a\x7fb'],
    ['Latin-1', 'café'],
    ['CJK', '鍵'],
    ['an emoji', 'lock-😀'],
  ] as const) {
    test(`keys - a name with ${label} is sent base64 with the b flag`, () => {
      const k = encodeKey('', name)
      assert.equal(k.base64, true)
      assert.equal(k.wire, Buffer.from(name, 'utf8').toString('base64'))
      assert.equal(decodeWireKey(k.wire, true).toString('utf8'), name)
    })
  }

  test('keys - the prefix is part of the encoded key', () => {
    const k = encodeKey('app ', 'x')
    assert.deepEqual(k, { wire: Buffer.from('app x').toString('base64'), base64: true })
    // a safe name under an unsafe prefix still needs base64
    assert.equal(encodeKey('ä:', 'plain').base64, true)
  })

  test('keys - up to 186 bytes is plain base64, which fits in 248 characters', () => {
    const name = 'é'.repeat(93) // 186 UTF-8 bytes
    const k = encodeKey('', name)
    assert.equal(k.base64, true)
    assert.equal(k.wire.length, 248)
    assert.equal(decodeWireKey(k.wire, true).toString('utf8'), name)
    assert.equal(MAX_BASE64_KEY_BYTES, 186)
  })

  test('keys - more than 186 bytes that need base64 become the hashed form', () => {
    const name = 'é'.repeat(93) + ' ' // 187 bytes
    const k = encodeKey('', name)
    assert.equal(k.base64, true)
    const bytes = decodeWireKey(k.wire, true)
    assert.equal(bytes.length, 34)
    assert.equal(bytes[0], 0xff)
    assert.equal(bytes[1], 0x68)
    assert.deepEqual(bytes.subarray(2), createHash('sha256').update(name, 'utf8').digest())
  })

  test('keys - the hashed form is stable and depends on prefix + name', () => {
    const long = 'x '.repeat(200)
    assert.deepEqual(encodeKey('', long), encodeKey('', long))
    assert.deepEqual(encodeKey('p:', long), encodeKey('p:', long))
    assert.notDeepEqual(encodeKey('p:', long), encodeKey('q:', long))
    assert.notDeepEqual(encodeKey('', long), encodeKey('', long + 'y'))
    // pinned: a change here breaks every lock held by a deployed older version
    assert.equal(encodeKey('', 'k'.repeat(300)).wire, Buffer.concat([Buffer.from([0xff, 0x68]), createHash('sha256').update('k'.repeat(300)).digest()]).toString('base64'))
  })

  test('keys - exactly 250 safe characters are sent raw', () => {
    const name = 'a'.repeat(MAX_KEY_BYTES)
    assert.deepEqual(encodeKey('', name), { wire: name, base64: false })
    assert.deepEqual(encodeKey('pre:', 'a'.repeat(246)), { wire: 'pre:' + 'a'.repeat(246), base64: false })
  })

  test('keys - 251 safe characters become the hashed form', () => {
    for (const k of [encodeKey('', 'a'.repeat(251)), encodeKey('pre:', 'a'.repeat(247))]) {
      assert.equal(k.base64, true)
      assert.ok(k.wire.length <= MAX_KEY_BYTES)
      const bytes = decodeWireKey(k.wire, true)
      assert.equal(bytes[0], 0xff)
      assert.equal(bytes[1], 0x68)
    }
  })

  test('keys - names up to the maximum length are accepted, longer ones refused', () => {
    assert.equal(encodeKey('', 'a'.repeat(MAX_NAME_LENGTH)).base64, true)
    assertInvalid(() => encodeKey('', 'a'.repeat(MAX_NAME_LENGTH + 1)), /at most 65536 characters, got 65537/)
  })

  test('keys - a lone surrogate is refused', () => {
    assertInvalid(() => encodeKey('', 'a\ud800b'), /lone surrogate/)
    assertInvalid(() => encodeKey('', '\udc00'), /lone surrogate/)
    // a proper pair is fine
    assert.equal(encodeKey('', '\ud83d\ude00').base64, true)
  })

  test('keys - property: any name with a lone surrogate is refused', () => {
    const unit = fc.constantFrom('a', ' ', 'é', '\ud83d\ude00', '\ud800', '\udbff', '\udc00', '\udfff')
    fc.assert(
      fc.property(fc.string({ unit, minLength: 1, maxLength: 40 }), (n) => {
        if (n.isWellFormed()) encodeKey('', n)
        else assertInvalid(() => encodeKey('', n), /lone surrogate/)
      }),
      { numRuns: 500 },
    )
  })

  test('keys - an empty name is refused', () => {
    assertInvalid(() => encodeKey('', ''), /non-empty string, got ""/)
    assertInvalid(() => encodeKey('prefix:', ''), /non-empty string/)
  })

  for (const [label, value, described] of [
    ['a number', 42, '42'],
    ['null', null, 'null'],
    ['undefined', undefined, 'undefined'],
    ['an object', { name: 'x' }, 'an object'],
    ['an array', ['x'], 'an array'],
    ['a symbol', Symbol('x'), 'symbol'],
    ['a function', () => 'x', 'a function'],
  ] as const) {
    test(`keys - ${label} as the name is refused`, () => {
      assertInvalid(() => encodeKey('', value as unknown as string), new RegExp(`non-empty string, got ${described}`))
    })
  }

  test('keys - validatePrefix accepts short strings and refuses the rest', () => {
    assert.equal(validatePrefix(''), '')
    assert.equal(validatePrefix('app:'), 'app:')
    assert.equal(validatePrefix('p'.repeat(128)), 'p'.repeat(128))
    assertInvalid(() => validatePrefix('p'.repeat(129)))
    assertInvalid(() => validatePrefix(7))
    assertInvalid(() => validatePrefix('\ud800'))
  })

  test('keys - property: the wire token is one safe token of at most 250 characters', () => {
    const anyChar = fc.oneof(
      fc.constantFrom(' ', '\r', '\n', '\0', '\t', '\x7f', '\x1b', 'é', '😀', '\u2028', '\ufeff'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
    )
    const name = fc.oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 300 }),
      fc.string({ unit: anyChar, minLength: 1, maxLength: 300 }),
      fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 300 }),
    )
    const prefix = fc.oneof(fc.constant(''), fc.string({ unit: 'grapheme-ascii', maxLength: 20 }), fc.string({ unit: anyChar, maxLength: 20 }))
    fc.assert(
      fc.property(prefix, name, (p, n) => {
        const k = encodeKey(p, n)
        assert.ok(k.wire.length >= 1 && k.wire.length <= MAX_KEY_BYTES, `wire length ${k.wire.length}`)
        for (let i = 0; i < k.wire.length; i++) {
          const c = k.wire.charCodeAt(i)
          assert.ok(c > 0x20 && c < 0x7f, `wire char 0x${c.toString(16)} at ${i}`)
        }
        if (k.base64) assert.match(k.wire, /^[A-Za-z0-9+/]+={0,2}$/)
        else assert.equal(k.wire, p + n)
        // plain base64 keys decode to exactly prefix + name
        const bytes = decodeWireKey(k.wire, k.base64)
        if (bytes[0] !== 0xff) assert.equal(bytes.toString('utf8'), p + n)
      }),
      { numRuns: 2000 },
    )
  })

  test('keys - distinct names give distinct stored keys (sample)', () => {
    const names = new Set<string>()
    // hand-picked near-collisions: raw text that looks like base64 of another name, the same
    // text with and without an unsafe character, and long names that share a prefix
    for (const n of ['abc', 'YWJj', 'a b', 'YSBi', 'a\tb', 'a\nb', 'a\rb', 'é', 'w6k=', 'x'.repeat(250), 'x'.repeat(251), 'x'.repeat(252)]) {
      names.add(n)
    }
    fc.sample(fc.string({ unit: 'binary', minLength: 1, maxLength: 260 }), { numRuns: 3000, seed: 42 }).forEach((n) => names.add(n))
    fc.sample(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 300 }), { numRuns: 3000, seed: 7 }).forEach((n) => names.add(n))
    const seen = new Map<string, string>()
    for (const n of names) {
      const stored = storedBytes(n)
      const other = seen.get(stored)
      assert.equal(other, undefined, `${JSON.stringify(n)} and ${JSON.stringify(other)} share a key`)
      seen.set(stored, n)
    }
    assert.equal(seen.size, names.size)
  })
})

test('keys - companion keys (waiting line, fence counter) never equal a lock key', async () => {
  const { encodeCompanionKey, encodeKey } = await import('../../src/protocol/keys.js')
  const bytes = (k: { wire: string; base64: boolean }): string =>
    k.base64 ? Buffer.from(k.wire, 'base64').toString('latin1') : k.wire
  for (const name of ['x', 'x\u0001q', 'x\u0001s', '\u00ffl' + 'q' + 'x', 'y'.repeat(400)]) {
    for (const tag of ['q', 's', 'f']) {
      const companion = bytes(encodeCompanionKey('lock:', name, tag))
      assert.ok(companion.startsWith('\xffl'), 'marked with 0xFF, which UTF-8 never produces')
      for (const other of ['x', 'x\u0001q', 'x\u0001s', name, name + '\u0001' + tag]) {
        assert.notEqual(companion, bytes(encodeKey('lock:', other)))
      }
    }
  }
})
