import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { OwnerInfo } from './lock-store.js'

let host: string | undefined
let pool = ''
let pos = 0

/** A new owner token: 128 random bits from `crypto`, hex. Drawn from a pooled buffer (one syscall per 256 tokens). */
export function newToken(): string {
  if (pos + 32 > pool.length) {
    pool = randomBytes(4096).toString('hex')
    pos = 0
  }
  const t = pool.slice(pos, pos + 32)
  pos += 32
  return t
}

/** This host and process, now: stored beside the token so an operator can tell who holds a lock. */
export function defaultOwner(label?: string): OwnerInfo {
  host ??= hostname()
  return label ? { host, pid: process.pid, since: Date.now(), label } : { host, pid: process.pid, since: Date.now() }
}
