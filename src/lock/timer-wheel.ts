/**
 * One timer for many handles. Renewals and expiry checks are put in 20 ms buckets and a single
 * `setTimeout` fires the earliest bucket, so 10k held locks cost one timer, and the renewals due
 * together share socket writes (the connection's batching). Buckets round *down*: a job may run
 * up to one tick early, never late (renewing early and checking expiry early are both safe). The
 * timer is unref'd: held locks alone do not keep a process alive.
 */
export interface WheelJob {
  /** @internal bucket the job is in, or NaN when not scheduled */
  bucket: number
  readonly run: () => void
}

export const WHEEL_TICK_MS = 20

export class TimerWheel {
  readonly #now: () => number
  readonly #buckets = new Map<number, Set<WheelJob>>()
  #timer: NodeJS.Timeout | null = null
  #armedFor = Infinity

  constructor(now: () => number) {
    this.#now = now
  }

  /** Runs `job` at `at` (ms on the wheel's clock) or up to one tick before. Replaces an earlier schedule of the same job. */
  schedule(job: WheelJob, at: number): void {
    this.cancel(job)
    const bucket = Math.floor(at / WHEEL_TICK_MS) * WHEEL_TICK_MS
    let set = this.#buckets.get(bucket)
    if (!set) {
      set = new Set()
      this.#buckets.set(bucket, set)
    }
    set.add(job)
    job.bucket = bucket
    if (bucket < this.#armedFor) this.#arm(bucket)
  }

  cancel(job: WheelJob): void {
    if (Number.isNaN(job.bucket)) return
    // an emptied bucket stays until its tick (the timer is armed for it anyway): no Set churn
    // when locks are taken and released many times within one tick
    this.#buckets.get(job.bucket)?.delete(job)
    job.bucket = NaN
  }

  #arm(bucket: number): void {
    if (this.#timer) clearTimeout(this.#timer)
    this.#armedFor = bucket
    this.#timer = setTimeout(this.#fire, Math.max(0, bucket - this.#now()))
    this.#timer.unref()
  }

  readonly #fire = (): void => {
    this.#timer = null
    this.#armedFor = Infinity
    const now = this.#now()
    const due: WheelJob[] = []
    let next = Infinity
    for (const [bucket, set] of this.#buckets) {
      if (bucket <= now) {
        for (const job of set) {
          job.bucket = NaN
          due.push(job)
        }
        this.#buckets.delete(bucket)
      } else if (set.size === 0) {
        // emptied by cancellations: not worth a wake-up of its own
        this.#buckets.delete(bucket)
      } else if (bucket < next) next = bucket
    }
    for (const job of due) {
      try {
        job.run()
      } catch {
        // a job's failure must not stop the others; jobs report their own errors
      }
    }
    if (next !== Infinity && next < this.#armedFor) this.#arm(next)
  }
}
