/**
 * The shared timer wheel: jobs run at most one tick early and never twice, a cancelled job never
 * runs, and buckets emptied by cancellations do not stop later jobs from running.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { TimerWheel, WHEEL_TICK_MS, type WheelJob } from '../../src/lock/timer-wheel.js'
import { within } from '../helpers/util.js'

/** Hang guard, not a performance assertion. */
const SOON_MS = 5000

function job(onRun: () => void): WheelJob {
  return { bucket: NaN, run: onRun }
}

describe('timer wheel', () => {
  test('timer wheel - a job runs once, never more than one tick before its time', async () => {
    const wheel = new TimerWheel(() => performance.now())
    const at = performance.now() + 3 * WHEEL_TICK_MS
    let runs = 0
    let ranAt = NaN
    await within(
      new Promise<void>((resolve) => {
        wheel.schedule(
          job(() => {
            runs++
            ranAt = performance.now()
            resolve()
          }),
          at,
        )
      }),
      SOON_MS,
      'the job',
    )
    assert.ok(ranAt >= at - WHEEL_TICK_MS, `ran ${(at - ranAt).toFixed(1)} ms early`)
    await new Promise((r) => setTimeout(r, 3 * WHEEL_TICK_MS))
    assert.equal(runs, 1)
  })

  test('timer wheel - cancelled jobs never run; later jobs still run after their buckets were emptied', async () => {
    const wheel = new TimerWheel(() => performance.now())
    const now = performance.now()
    const cancelled: string[] = []
    // many jobs in a few buckets, all cancelled: their buckets stay empty until their ticks
    for (let i = 0; i < 50; i++) {
      const j = job(() => cancelled.push(`job ${i}`))
      wheel.schedule(j, now + WHEEL_TICK_MS * (1 + (i % 5)))
      wheel.cancel(j)
    }
    // rescheduling replaces the earlier schedule of the same job
    let moved = 0
    const m = job(() => moved++)
    wheel.schedule(m, now + WHEEL_TICK_MS)
    const late = new Promise<void>((resolve) => wheel.schedule(job(resolve), now + 8 * WHEEL_TICK_MS))
    wheel.schedule(m, now + 6 * WHEEL_TICK_MS)
    await within(late, SOON_MS, 'the job after the emptied buckets')
    assert.deepEqual(cancelled, [])
    assert.equal(moved, 1)
  })
})
