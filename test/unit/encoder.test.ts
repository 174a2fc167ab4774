import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import {
  encodeAuth,
  encodeMetaArithmetic,
  encodeMetaDelete,
  encodeMetaGet,
  encodeMetaNoop,
  encodeMetaSet,
  encodeStats,
  encodeVersion,
  encodeWatch,
} from '../../src/protocol/encoder.js'
import { encodeKey, type WireKey } from '../../src/protocol/keys.js'

const raw: WireKey = { wire: 'lock:a', base64: false }
// "bin key" has a space, so encodeKey sends it base64-encoded
const b64 = encodeKey('', 'bin key')

describe('encoder', () => {
  test('encoder - the base64 test key is what encodeKey gives for a name with a space', () => {
    assert.deepEqual(b64, { wire: 'YmluIGtleQ==', base64: true })
  })

  test('encoder - ms with a value and flags', () => {
    assert.equal(encodeMetaSet(raw, 'owner-A1', ['T30', 'ME', 'c']), 'ms lock:a 8 T30 ME c\r\nowner-A1\r\n')
  })

  test('encoder - ms with client flags, opaque and key flags in the given order', () => {
    assert.equal(
      encodeMetaSet(raw, 'owner-A1', ['T30', 'ME', 'c', 'F7', 'O123', 'k']),
      'ms lock:a 8 T30 ME c F7 O123 k\r\nowner-A1\r\n',
    )
  })

  test('encoder - ms with no flags and an empty value', () => {
    assert.equal(encodeMetaSet(raw, '', []), 'ms lock:a 0\r\n\r\n')
  })

  test('encoder - ms counts the data length in UTF-8 bytes, not UTF-16 units', () => {
    // "é" is 2 bytes, "😀" is 4 bytes (2 UTF-16 units)
    const text = encodeMetaSet(raw, 'é😀', ['T5'])
    assert.equal(text, 'ms lock:a 6 T5\r\né😀\r\n')
    assert.deepEqual(
      Buffer.from(text, 'utf8'),
      Buffer.concat([Buffer.from('ms lock:a 6 T5\r\n'), Buffer.from([0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80]), Buffer.from('\r\n')]),
    )
  })

  test('encoder - ms with a base64 key puts b right after the length', () => {
    assert.equal(encodeMetaSet(b64, 'v1', ['T30', 'ME', 'c']), 'ms YmluIGtleQ== 2 b T30 ME c\r\nv1\r\n')
  })

  test('encoder - ms extend with a CAS', () => {
    assert.equal(encodeMetaSet(raw, 'ab', ['T100', 'C7', 'c']), 'ms lock:a 2 T100 C7 c\r\nab\r\n')
  })

  test('encoder - ms compare-and-expire with a negative TTL', () => {
    assert.equal(encodeMetaSet(raw, 'ab', ['T-1', 'C1']), 'ms lock:a 2 T-1 C1\r\nab\r\n')
  })

  test('encoder - mg with flags', () => {
    assert.equal(encodeMetaGet(raw, ['v', 'c', 't', 's', 'f']), 'mg lock:a v c t s f\r\n')
  })

  test('encoder - flags reused from the previous request follow the array as it is now (changed in place, longer, shorter, emptied)', () => {
    const flags = ['v', 'c', 't']
    assert.equal(encodeMetaGet(raw, flags), 'mg lock:a v c t\r\n')
    assert.equal(encodeMetaGet(raw, flags), 'mg lock:a v c t\r\n')
    assert.equal(encodeMetaGet(raw, ['v', 'c', 't']), 'mg lock:a v c t\r\n')
    flags[1] = 'k'
    assert.equal(encodeMetaGet(raw, flags), 'mg lock:a v k t\r\n')
    flags.push('s')
    assert.equal(encodeMetaGet(raw, flags), 'mg lock:a v k t s\r\n')
    flags.length = 1
    assert.equal(encodeMetaGet(raw, flags), 'mg lock:a v\r\n')
    flags.length = 0
    assert.equal(encodeMetaGet(raw, flags), 'mg lock:a\r\n')
    assert.equal(encodeMetaDelete(raw, ['v']), 'md lock:a v\r\n')
    assert.equal(encodeMetaSet(raw, 'x', ['v']), 'ms lock:a 1 v\r\nx\r\n')
  })

  test('encoder - the opaque argument comes last, after the b flag and the flags, for every meta command', () => {
    assert.equal(encodeMetaGet(raw, ['v', 'c'], 7), 'mg lock:a v c O7\r\n')
    assert.equal(encodeMetaGet(b64, [], 4095), 'mg YmluIGtleQ== b O4095\r\n')
    assert.equal(encodeMetaDelete(raw, ['C4'], 1), 'md lock:a C4 O1\r\n')
    assert.equal(encodeMetaArithmetic(b64, ['MI'], 0), 'ma YmluIGtleQ== b MI O0\r\n')
    assert.equal(encodeMetaSet(raw, 'v1', ['T30'], 12), 'ms lock:a 2 T30 O12\r\nv1\r\n')
  })

  test('encoder - an opaque gives the same text whether its line end is made or reused, in and beyond the cache', () => {
    for (const opaque of [0, 1, 9, 10, 4096, 65_535, 65_536, 1_000_000, 2 ** 32 - 1]) {
      const want = `mg lock:a v O${opaque}\r\n`
      assert.equal(encodeMetaGet(raw, ['v'], opaque), want)
      assert.equal(encodeMetaGet(raw, ['v'], opaque), want)
    }
  })

  test('encoder - mg with no flags', () => {
    assert.equal(encodeMetaGet(raw, []), 'mg lock:a\r\n')
  })

  test('encoder - mg with a base64 key', () => {
    assert.equal(encodeMetaGet(b64, ['v', 'c', 'k', 'O9']), 'mg YmluIGtleQ== b v c k O9\r\n')
  })

  test('encoder - md with a CAS', () => {
    assert.equal(encodeMetaDelete(raw, ['C1003']), 'md lock:a C1003\r\n')
  })

  test('encoder - md with a base64 key and quiet mode', () => {
    assert.equal(encodeMetaDelete(b64, ['C4', 'q', 'O1']), 'md YmluIGtleQ== b C4 q O1\r\n')
  })

  test('encoder - ma with flags', () => {
    assert.equal(encodeMetaArithmetic(raw, ['C10', 'D0', 'T77', 'c', 't', 'v']), 'ma lock:a C10 D0 T77 c t v\r\n')
  })

  test('encoder - ma with a base64 key', () => {
    assert.equal(encodeMetaArithmetic(b64, ['MI', 'D1']), 'ma YmluIGtleQ== b MI D1\r\n')
  })

  test('encoder - mn', () => {
    assert.equal(encodeMetaNoop(), 'mn\r\n')
  })

  test('encoder - version', () => {
    assert.equal(encodeVersion(), 'version\r\n')
  })

  test('encoder - stats', () => {
    assert.equal(encodeStats(), 'stats\r\n')
  })

  test('encoder - stats settings', () => {
    assert.equal(encodeStats('settings'), 'stats settings\r\n')
  })

  test('encoder - stats groups', () => {
    assert.equal(encodeStats('slabs'), 'stats slabs\r\n')
    assert.equal(encodeStats('items'), 'stats items\r\n')
    assert.equal(encodeStats('conns'), 'stats conns\r\n')
  })

  test('encoder - set auth', () => {
    assert.equal(encodeAuth('lockuser', 's3cret'), 'set auth 0 0 15\r\nlockuser s3cret\r\n')
  })

  test('encoder - set auth counts UTF-8 bytes', () => {
    assert.equal(encodeAuth('usér', 'pä'), 'set auth 0 0 9\r\nusér pä\r\n')
  })

  test('encoder - watch one stream', () => {
    assert.equal(encodeWatch(['mutations']), 'watch mutations\r\n')
  })

  test('encoder - watch several streams', () => {
    assert.equal(encodeWatch(['mutations', 'fetchers', 'evictions']), 'watch mutations fetchers evictions\r\n')
  })
})
