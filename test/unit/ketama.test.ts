import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'

import { KetamaRing } from '../../src/client/ketama.js'

const FIVE = ['127.0.0.1:11211', '127.0.0.1:11212', '127.0.0.1:11213', '127.0.0.1:11214', '127.0.0.1:11215']
const KEYS = Array.from({ length: 100_000 }, (_, i) => `lock:key-${i}`)

/** The ketama scheme written out the slow, obvious way: 2560 points per server, linear scan. */
function referenceServerFor(names: readonly string[], key: string): number {
  const points: { point: number; owner: number }[] = []
  names.forEach((name, owner) => {
    for (let i = 0; i < 640; i++) {
      const d = createHash('md5').update(`${name}-${i}`).digest()
      for (let h = 0; h < 4; h++) points.push({ point: d.readUInt32LE(h * 4), owner })
    }
  })
  points.sort((a, b) => a.point - b.point || a.owner - b.owner)
  const hash = createHash('md5').update(key).digest().readUInt32LE(0)
  const hit = points.find((p) => p.point >= hash) ?? points[0]!
  return hit.owner
}

/** Share of KEYS (or of its first `count`) per server. */
function shares(names: readonly string[], count = KEYS.length): Map<string, number> {
  const ring = new KetamaRing(names)
  const out = new Map<string, number>(names.map((n) => [n, 0]))
  for (let i = 0; i < count; i++) {
    const name = names[ring.serverFor(KEYS[i]!)]!
    out.set(name, out.get(name)! + 1 / count)
  }
  return out
}

function assign(ring: KetamaRing, names: readonly string[]): string[] {
  return KEYS.map((k) => names[ring.serverFor(k)]!)
}

describe('KetamaRing', () => {
  test('ketama - deterministic: the same list gives the same mapping', () => {
    const a = new KetamaRing(FIVE)
    const b = new KetamaRing([...FIVE])
    for (const k of KEYS.slice(0, 10_000)) assert.equal(a.serverFor(k), b.serverFor(k))
  })

  test('ketama - matches the reference scheme (md5 points, little-endian, wrap-around)', () => {
    const ring = new KetamaRing(FIVE)
    for (const k of KEYS.slice(0, 500)) assert.equal(ring.serverFor(k), referenceServerFor(FIVE, k), k)
  })

  test('ketama - a string key and its bytes map to the same server', () => {
    const ring = new KetamaRing(FIVE)
    for (const k of ['lock:a', 'é', 'x y']) assert.equal(ring.serverFor(k), ring.serverFor(Buffer.from(k, 'utf8')))
    const binary = Buffer.from([0xff, 0x68, 0x00, 0x01])
    assert.equal(ring.serverFor(binary), ring.serverFor(Buffer.from(binary)))
  })

  test('ketama - the mapping follows the names, not the list order', () => {
    const ring = new KetamaRing(FIVE)
    const reversed = [...FIVE].reverse()
    const ringReversed = new KetamaRing(reversed)
    for (const k of KEYS.slice(0, 5_000)) assert.equal(FIVE[ring.serverFor(k)], reversed[ringReversed.serverFor(k)])
  })

  test('ketama - one server takes every key', () => {
    const ring = new KetamaRing(['only:11211'])
    for (const k of KEYS.slice(0, 1000)) assert.equal(ring.serverFor(k), 0)
  })

  test('ketama - an empty ring throws', () => {
    assert.throws(() => new KetamaRing([]).serverFor('k'), /empty ring/)
  })

  test('ketama - 100k keys over 5 servers: each within +-10% of 20%, on 20 server lists', () => {
    for (let list = 0; list < 20; list++) {
      const names =
        list === 0 ? FIVE : Array.from({ length: 5 }, (_, i) => `10.${list}.${i * 37}.${(list * 11 + i) % 256}:${11211 + list}`)
      for (const [name, share] of shares(names)) {
        assert.ok(share >= 0.18 && share <= 0.22, `${name} has ${(share * 100).toFixed(2)}% of the keys`)
      }
    }
  })

  test('ketama - removing a server moves only its keys, at most 25%', () => {
    const before = assign(new KetamaRing(FIVE), FIVE)
    for (const removed of FIVE) {
      const rest = FIVE.filter((n) => n !== removed)
      const after = assign(new KetamaRing(rest), rest)
      let moved = 0
      for (let i = 0; i < KEYS.length; i++) {
        if (before[i] !== after[i]) {
          moved++
          assert.equal(before[i], removed, `${KEYS[i]} moved from ${before[i]} though ${removed} was removed`)
        } else {
          assert.notEqual(before[i], removed)
        }
      }
      assert.ok(moved / KEYS.length <= 0.25, `removing ${removed} moved ${moved} keys`)
      assert.ok(moved > 0)
    }
  })

  test('ketama - adding a sixth server moves about 1/6 of the keys, all to it', () => {
    const before = assign(new KetamaRing(FIVE), FIVE)
    const six = [...FIVE, '127.0.0.1:11216']
    const after = assign(new KetamaRing(six), six)
    let moved = 0
    for (let i = 0; i < KEYS.length; i++) {
      if (before[i] !== after[i]) {
        moved++
        assert.equal(after[i], '127.0.0.1:11216', `${KEYS[i]} moved to ${after[i]}`)
      }
    }
    const share = moved / KEYS.length
    assert.ok(Math.abs(share - 1 / 6) <= 0.05, `adding one server moved ${(share * 100).toFixed(2)}% of the keys`)
  })
})
