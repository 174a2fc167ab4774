// The floor: a bare net.Socket speaking memcached's meta protocol, one socket write per
// request, replies matched first-in first-out. No options, no opaque checks, no timeouts:
// nothing a real client could do with less work. Also serves as the "optimistic store" of the
// serializer scenario (a CAS-checked counter).
import net from 'node:net'

export class RawMeta {
  #sock
  #buf = Buffer.alloc(0)
  /** Resolvers of requests written, oldest first. */
  #pending = []
  #head = 0

  static async connect(address) {
    const [host, port] = address.split(':')
    const sock = net.connect(Number(port), host)
    sock.setNoDelay(true)
    await new Promise((resolve, reject) => {
      sock.once('connect', resolve)
      sock.once('error', reject)
    })
    return new RawMeta(sock)
  }

  constructor(sock) {
    this.#sock = sock
    sock.on('data', (chunk) => this.#onData(chunk))
    sock.on('error', (err) => this.#failAll(err))
    sock.on('close', () => this.#failAll(new Error('raw connection closed')))
  }

  /** Sends one request (one write) and resolves with `{ line, value }` (value only for `VA`). */
  request(text) {
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject })
      this.#sock.write(text)
    })
  }

  close() {
    this.#sock.end()
    this.#sock.destroy()
  }

  #onData(chunk) {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk])
    let pos = 0
    for (;;) {
      const nl = this.#buf.indexOf('\r\n', pos, 'latin1')
      if (nl < 0) break
      const line = this.#buf.toString('latin1', pos, nl)
      let next = nl + 2
      let value
      if (line.startsWith('VA ')) {
        const sp = line.indexOf(' ', 3)
        const len = Number(sp < 0 ? line.slice(3) : line.slice(3, sp))
        if (this.#buf.length < next + len + 2) break
        value = this.#buf.toString('utf8', next, next + len)
        next += len + 2
      }
      pos = next
      const p = this.#pending[this.#head++]
      if (this.#head > 1024) {
        this.#pending.splice(0, this.#head)
        this.#head = 0
      }
      p?.resolve({ line, value })
    }
    this.#buf = pos >= this.#buf.length ? Buffer.alloc(0) : this.#buf.subarray(pos)
  }

  #failAll(err) {
    const rest = this.#pending.slice(this.#head)
    this.#pending = []
    this.#head = 0
    for (const p of rest) p.reject(err)
  }
}

/** `HD c123 ...` -> `"123"` */
export function casOf(line) {
  const m = / c(\d+)/.exec(line)
  if (!m) throw new Error(`no CAS in ${JSON.stringify(line)}`)
  return m[1]
}
