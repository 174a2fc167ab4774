/**
 * The promise pool: every promise taken is a new, pending one whose resolving functions come with
 * it; the pool fills itself in a later turn, never past its size, and a promise resolved or
 * rejected through the pool settles that promise and no other.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { PromisePool } from '../../src/internal/promise-pool.js'

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** 'pending', or how the promise settled, once the microtasks queued so far have run. */
async function stateOf(p: Promise<unknown>): Promise<string> {
  let state = 'pending'
  p.then(
    (v) => (state = `resolved ${String(v)}`),
    (e: Error) => (state = `rejected ${e.message}`),
  )
  await nextTurn()
  return state
}

describe('promise pool', () => {
  test('promise pool - starts empty, fills itself to its size in the next turn, and never beyond', async () => {
    const pool = new PromisePool<number, Error>(8)
    assert.equal(pool.available, 0)
    pool.take()
    assert.equal(pool.available, 0, 'made on the spot while empty')
    await nextTurn()
    assert.equal(pool.available, 8)
    await nextTurn()
    assert.equal(pool.available, 8, 'a full pool makes nothing more')
  })

  test('promise pool - taking more than it holds makes the rest on the spot, each distinct', async () => {
    const pool = new PromisePool<number, Error>(4)
    pool.take()
    await nextTurn()
    const taken = Array.from({ length: 10 }, () => {
      const promise = pool.take()
      return { promise, resolve: pool.resolve, reject: pool.reject }
    })
    assert.equal(new Set(taken.map((t) => t.promise)).size, 10)
    assert.equal(new Set(taken.map((t) => t.resolve)).size, 10)
    taken.forEach((t, i) => (i % 2 ? t.reject(new Error(`no ${i}`)) : t.resolve(i)))
    const states = await Promise.all(taken.map((t) => stateOf(t.promise)))
    assert.deepEqual(
      states,
      taken.map((_, i) => (i % 2 ? `rejected no ${i}` : `resolved ${i}`)),
    )
  })

  test('promise pool - a taken promise stays pending until its own functions settle it', async () => {
    const pool = new PromisePool<string, Error>(4)
    pool.take()
    await nextTurn()
    const a = pool.take()
    const resolveA = pool.resolve
    const b = pool.take()
    pool.resolve('b')
    assert.equal(await stateOf(a), 'pending')
    assert.equal(await stateOf(b), 'resolved b')
    resolveA('a')
    assert.equal(await stateOf(a), 'resolved a')
  })

  test('promise pool - refills once half or fewer are left, not after every take', async () => {
    const pool = new PromisePool<number, Error>(8)
    pool.take()
    await nextTurn()
    for (let i = 0; i < 3; i++) pool.take()
    await nextTurn()
    assert.equal(pool.available, 5, 'more than half left: no refill')
    pool.take()
    await nextTurn()
    assert.equal(pool.available, 8, 'half left: refilled')
  })
})
