// Server-side request counters, read over a short-lived raw socket: what a scenario cost the
// server, independent of what the clients say about themselves.
import net from 'node:net'

function ask(port, request, done) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    let buf = ''
    const t = setTimeout(() => {
      s.destroy()
      reject(new Error(`no answer to ${JSON.stringify(request.trim())} on port ${port}`))
    }, 2000)
    s.on('connect', () => s.write(request))
    s.on('data', (d) => {
      buf += d.toString('latin1')
      if (done(buf)) {
        clearTimeout(t)
        s.destroy()
        resolve(buf)
      }
    })
    s.on('error', (e) => {
      clearTimeout(t)
      reject(e)
    })
  })
}

/** memcached `stats` as a name -> number record. */
export async function memcachedStats(address) {
  const port = Number(address.split(':')[1])
  const text = await ask(port, 'stats\r\n', (b) => b.endsWith('END\r\n'))
  const out = {}
  for (const line of text.split('\r\n')) {
    const [tag, name, value] = line.split(' ')
    if (tag === 'STAT') out[name] = Number(value)
  }
  return out
}

/** Requests a memcached server answered (gets, sets, deletes, arithmetic, touches). */
export async function memcachedRequests(address) {
  const s = await memcachedStats(address)
  return (
    s.cmd_get + s.cmd_set + s.cmd_touch + s.delete_hits + s.delete_misses + s.incr_hits + s.incr_misses + s.decr_hits + s.decr_misses
  )
}

/** Commands a redis server processed (`INFO stats` total_commands_processed). */
export async function redisRequests(port) {
  const text = await ask(port, 'INFO stats\r\n', (b) => {
    const m = /^\$(\d+)\r\n/.exec(b)
    return m !== null && Buffer.byteLength(b, 'latin1') >= m[0].length + Number(m[1]) + 2
  })
  return Number(/total_commands_processed:(\d+)/.exec(text)?.[1])
}
