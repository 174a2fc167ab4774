import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { InvalidArgumentError } from '../../src/errors.js'
import { formatAddress, parseAddress, parseServerList } from '../../src/client/server-address.js'

function assertInvalid(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`)
    assert.equal(err.code, 'ERR_INVALID_ARGUMENT')
    if (message) assert.match(err.message, message)
    return true
  })
}

describe('parseAddress', () => {
  test('server-address - a bare host gets the default port 11211', () => {
    assert.deepEqual(parseAddress('cache-1'), { host: 'cache-1', port: 11211 })
    assert.deepEqual(parseAddress('127.0.0.1'), { host: '127.0.0.1', port: 11211 })
  })

  test('server-address - host:port', () => {
    assert.deepEqual(parseAddress('cache-1:21211'), { host: 'cache-1', port: 21211 })
    assert.deepEqual(parseAddress('10.0.0.7:1'), { host: '10.0.0.7', port: 1 })
    assert.deepEqual(parseAddress('localhost:65535'), { host: 'localhost', port: 65535 })
  })

  test('server-address - surrounding whitespace is ignored', () => {
    assert.deepEqual(parseAddress('  cache-1:11212 \n'), { host: 'cache-1', port: 11212 })
  })

  test('server-address - IPv6 in brackets, with and without a port', () => {
    assert.deepEqual(parseAddress('[::1]:11211'), { host: '::1', port: 11211 })
    assert.deepEqual(parseAddress('[::1]'), { host: '::1', port: 11211 })
    assert.deepEqual(parseAddress('[2001:db8::17]:21211'), { host: '2001:db8::17', port: 21211 })
  })

  test('server-address - IPv6 without brackets is refused', () => {
    assertInvalid(() => parseAddress('::1'), /IPv6 in brackets/)
    assertInvalid(() => parseAddress('2001:db8::17:11211'), /IPv6 in brackets/)
  })

  test('server-address - an object { host, port }', () => {
    assert.deepEqual(parseAddress({ host: 'cache-1', port: 5 }), { host: 'cache-1', port: 5 })
    assert.deepEqual(parseAddress({ host: 'cache-1' }), { host: 'cache-1', port: 11211 })
    assert.deepEqual(parseAddress({ host: '::1', port: 7 }), { host: '::1', port: 7 })
  })

  for (const bad of ['h:0', 'h:65536', 'h:99999999', 'h:abc', 'h:', 'h:-1', 'h:1.5', 'h: 12', 'h:0x10', '[::1]:0', '[::1]:', '[::1]:x']) {
    test(`server-address - bad port in ${JSON.stringify(bad)} is refused`, () => {
      assertInvalid(() => parseAddress(bad), /port|host:port/)
    })
  }

  test('server-address - the port message says what was expected and what came', () => {
    assertInvalid(() => parseAddress('h:70000'), /integer from 1 to 65535, got 70000 in h:70000/)
    assertInvalid(() => parseAddress('h:abc'), /integer from 1 to 65535, got "h:abc"/)
  })

  for (const [label, bad] of [
    ['port-only', ':11211'],
    ['empty', ''],
    ['blank', '   '],
    ['a host with a space', 'cache 1:11211'],
    ['empty brackets', '[]:11211'],
    ['a bracket in a host name', 'ca[che]:11211'],
    ['an unclosed bracket', '[::1:11211'],
  ] as const) {
    test(`server-address - ${label} address is refused`, () => {
      assertInvalid(() => parseAddress(bad))
    })
  }

  for (const [label, bad] of [
    ['a number', 11211],
    ['null', null],
    ['undefined', undefined],
    ['an array', ['h', 1]],
    ['an object without host', { port: 1 }],
    ['an object with an empty host', { host: '', port: 1 }],
    ['an object with a string port', { host: 'h', port: '11211' }],
    ['an object with a fractional port', { host: 'h', port: 1.5 }],
    ['an object with port 0', { host: 'h', port: 0 }],
  ] as const) {
    test(`server-address - ${label} is refused`, () => {
      assertInvalid(() => parseAddress(bad))
    })
  }

  test('server-address - formatAddress round trips', () => {
    for (const text of ['cache-1:11211', '127.0.0.1:21211', '[::1]:11211', '[2001:db8::17]:5']) {
      assert.equal(formatAddress(parseAddress(text)), text)
    }
    assert.equal(formatAddress(parseAddress('cache-1')), 'cache-1:11211')
  })
})

describe('parseServerList', () => {
  test('server-address - env-style comma list', () => {
    assert.deepEqual(parseServerList('a:11211,b:11212,c'), [
      { host: 'a', port: 11211 },
      { host: 'b', port: 11212 },
      { host: 'c', port: 11211 },
    ])
  })

  test('server-address - commas, spaces, newlines and empty items mix', () => {
    assert.deepEqual(parseServerList(' a:1 , b:2\n[::1]:3,,\tc:4, '), [
      { host: 'a', port: 1 },
      { host: 'b', port: 2 },
      { host: '::1', port: 3 },
      { host: 'c', port: 4 },
    ])
  })

  test('server-address - an array of strings and objects', () => {
    assert.deepEqual(parseServerList(['a:1', { host: 'b', port: 2 }]), [
      { host: 'a', port: 1 },
      { host: 'b', port: 2 },
    ])
  })

  test('server-address - a single server', () => {
    assert.deepEqual(parseServerList('cache-1'), [{ host: 'cache-1', port: 11211 }])
  })

  test('server-address - duplicates are refused, including the default port spelled out', () => {
    assertInvalid(() => parseServerList('a:1,b:2,a:1'), /lists a:1 twice/)
    assertInvalid(() => parseServerList('cache-1,cache-1:11211'), /lists cache-1:11211 twice/)
    assertInvalid(() => parseServerList(['[::1]:5', { host: '::1', port: 5 }]), /lists \[::1\]:5 twice/)
  })

  test('server-address - an empty list is refused', () => {
    assertInvalid(() => parseServerList(''), /non-empty list/)
    assertInvalid(() => parseServerList(' , ,'), /non-empty list/)
    assertInvalid(() => parseServerList([]), /non-empty list/)
  })

  test('server-address - a non-list is refused', () => {
    assertInvalid(() => parseServerList(undefined))
    assertInvalid(() => parseServerList(11211))
    assertInvalid(() => parseServerList({ host: 'a' }))
  })

  test('server-address - one bad item fails the whole list', () => {
    assertInvalid(() => parseServerList('a:1,b:0'), /got 0/)
    assertInvalid(() => parseServerList(['a:1', 7]))
  })
})
