/**
 * Ketama consistent hashing, the scheme of libmemcached with more points: each server gets 2560
 * points on a 32-bit ring (640 MD5 digests of `"host:port-i"`, 4 points each, little-endian);
 * a key (its bytes as stored, prefix included) belongs to the first point at or after the first
 * 4 bytes (little-endian) of its MD5. libmemcached's 160 points leave a server's share off by up
 * to about 20%; 2560 keep it within about 5%. The same server list gives the same mapping in
 * every process (and any language that implements these few lines). Adding or removing one of N
 * servers moves about 1/N of the keys, and only to or from that server.
 */
import { createHash } from 'node:crypto'

const POINTS_PER_HASH = 4
const HASHES_PER_SERVER = 640

export class KetamaRing {
  readonly #points: Uint32Array
  readonly #owners: Uint16Array

  /** `names` are the servers' `host:port` labels, in configuration order; weights are equal. */
  constructor(names: readonly string[]) {
    const entries: { point: number; owner: number }[] = []
    names.forEach((name, owner) => {
      for (let i = 0; i < HASHES_PER_SERVER; i++) {
        const d = createHash('md5').update(`${name}-${i}`).digest()
        for (let h = 0; h < POINTS_PER_HASH; h++) entries.push({ point: d.readUInt32LE(h * 4), owner })
      }
    })
    entries.sort((a, b) => a.point - b.point || a.owner - b.owner)
    this.#points = Uint32Array.from(entries, (e) => e.point)
    this.#owners = Uint16Array.from(entries, (e) => e.owner)
  }

  /** Index (into the configured list) of the server that owns `key` (the key's bytes as stored). */
  serverFor(key: Buffer | string): number {
    if (this.#owners.length === 0) throw new Error('empty ring')
    const h = createHash('md5').update(key).digest().readUInt32LE(0)
    const pts = this.#points
    let lo = 0
    let hi = pts.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((pts[mid] as number) < h) lo = mid + 1
      else hi = mid
    }
    return this.#owners[lo === pts.length ? 0 : lo] as number
  }
}
