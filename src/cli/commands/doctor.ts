/** `memcached-lock doctor [servers...]`: can these servers hold locks safely? */
import { MemcachedClient, evictionRisk, parseServerList, serverTtlSeconds, type ServerAddress } from '../../index.js'
import { parseArgs, UsageError } from '../args.js'
import { CONNECTION_FLAGS, CONNECTION_HELP, EXIT, describeError, locksOptionsFrom, serversFrom } from '../common.js'
import { formatMs, paint, println, toJson, type Io } from '../output.js'

export const DOCTOR_HELP = `Usage: memcached-lock doctor [host:port...] [options]

Checks each server: reachable, version (the meta protocol needs memcached >= 1.6), whether lock
keys could be evicted before their TTL (-M or -o temporary_ttl needed), TLS and auth, the
server's clock and boot epoch, and the round-trip time. Prints findings with fixes.

Options:
      --ttl <duration>      longest lock TTL you use, for the eviction check   default 60s
${CONNECTION_HELP}

Exit codes: 0 every server is fit for locks; 1 a server is unreachable or unsafe; ${EXIT.USAGE} bad usage.

Examples:
  memcached-lock doctor
  memcached-lock doctor mc1:11211 mc2:11211 --ttl 5m --json`

export interface Finding {
  readonly level: 'ok' | 'warn' | 'fail'
  readonly check: string
  readonly detail: string
  readonly fix?: string
}

export interface ServerReport {
  readonly server: string
  readonly ok: boolean
  readonly version?: string
  readonly pid?: number
  readonly bootEpoch?: number
  readonly uptimeS?: number
  readonly clockSkewS?: number
  readonly rttMs?: number
  readonly findings: Finding[]
}

export async function doctorCommand(argv: readonly string[], io: Io): Promise<number> {
  const { flags, positionals, rest } = parseArgs(argv, { ...CONNECTION_FLAGS, ttl: { type: 'duration' } })
  if (flags.help) {
    println(io, DOCTOR_HELP)
    return EXIT.OK
  }
  if (rest !== null) throw new UsageError('doctor takes no "--"')
  let servers: ServerAddress[]
  try {
    servers = positionals.length > 0 ? parseServerList(positionals) : serversFrom(flags, io.env)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const ttlMs = (flags.ttl as number | undefined) ?? 60_000
  const opts = locksOptionsFrom(flags, io)
  const reports = await Promise.all(servers.map((s) => checkServer(s, ttlMs, opts)))
  if (flags.json) {
    println(io, toJson(reports))
  } else {
    for (const r of reports) {
      println(io, paint(io, 'bold', `${r.server}  ${r.ok ? paint(io, 'green', 'OK') : paint(io, 'red', 'UNSAFE')}`))
      for (const f of r.findings) {
        const mark = f.level === 'ok' ? paint(io, 'green', '  ok  ') : f.level === 'warn' ? paint(io, 'yellow', '  warn') : paint(io, 'red', '  FAIL')
        println(io, `${mark}  ${f.check}: ${f.detail}`)
        if (f.fix) println(io, `        fix: ${f.fix}`)
      }
    }
  }
  return reports.every((r) => r.ok) ? EXIT.OK : EXIT.UNSAFE
}

async function checkServer(address: ServerAddress, ttlMs: number, opts: ReturnType<typeof locksOptionsFrom>): Promise<ServerReport> {
  const client = new MemcachedClient({
    servers: [address],
    tls: opts.tls,
    auth: opts.auth,
    connectTimeoutMs: opts.connectTimeoutMs,
    requestTimeoutMs: opts.requestTimeoutMs,
  })
  const conn = client.connections[0] as (typeof client.connections)[number]
  const findings: Finding[] = []
  try {
    await conn.connect()
    const id = conn.identity
    if (!id) throw new Error('no identity')
    const localNow = Date.now() / 1000
    const rtts: number[] = []
    for (let i = 0; i < 5; i++) {
      const t = performance.now()
      await conn.metaNoop()
      rtts.push(performance.now() - t)
    }
    rtts.sort((a, b) => a - b)
    const rttMs = rtts[2] as number
    findings.push({ level: 'ok', check: 'reachable', detail: `connected${opts.tls ? ' over TLS' : ''}${opts.auth ? ' with auth' : ''}` })
    const [major, minor] = id.version.split('.').map(Number)
    const metaOk = (major ?? 0) > 1 || ((major ?? 0) === 1 && (minor ?? 0) >= 6)
    findings.push(
      metaOk
        ? { level: 'ok', check: 'version', detail: `memcached ${id.version} speaks the meta protocol` }
        : { level: 'fail', check: 'version', detail: `memcached ${id.version} has no meta protocol`, fix: 'upgrade to memcached 1.6 or later' },
    )
    const risk = evictionRisk(id.settings, serverTtlSeconds(ttlMs))
    findings.push(
      risk
        ? { level: 'fail', check: 'eviction', detail: `lock keys with a TTL of ${formatMs(ttlMs)} could be evicted before they expire`, fix: risk.replace(/^.*Fix: /, '') }
        : { level: 'ok', check: 'eviction', detail: id.settings.evictions === 'off' ? 'evictions off (-M)' : `temporary LRU holds TTLs up to ${id.settings.temporary_ttl} s` },
    )
    const tlsEnabled = id.settings.ssl_enabled === 'yes'
    findings.push({
      level: tlsEnabled || isLoopback(address.host) ? 'ok' : 'warn',
      check: 'tls',
      detail: tlsEnabled ? 'TLS enabled on the server' : 'no TLS',
      ...(tlsEnabled || isLoopback(address.host) ? {} : { fix: 'start memcached with -Z and ssl_chain_cert/ssl_key, connect with --tls' }),
    })
    // memcached reports the -Y auth file's path here when ASCII auth is on, and `no` when it is off
    const ascii = id.settings.auth_enabled_ascii
    const authOn = ascii !== undefined && ascii !== '' && ascii !== 'no'
    findings.push({ level: 'ok', check: 'auth', detail: authOn ? 'ASCII auth (-Y) required and accepted' : 'no authentication' })
    const skew = id.time - localNow
    findings.push({
      level: Math.abs(skew) > 2 ? 'warn' : 'ok',
      check: 'clock',
      detail: `server time ${skew >= 0 ? '+' : ''}${skew.toFixed(1)} s from this host; boot epoch ${id.bootEpoch}, pid ${id.pid}, up ${id.uptime} s (leases never depend on wall clocks)`,
    })
    if (id.uptime * 1000 < ttlMs) {
      findings.push({ level: 'warn', check: 'uptime', detail: `up ${id.uptime} s, less than the lock TTL: it restarted recently and forgot every lock it held` })
    }
    findings.push({ level: rttMs > 5 ? 'warn' : 'ok', check: 'latency', detail: `round trip ${rttMs.toFixed(2)} ms (median of 5)` })
    return {
      server: conn.name,
      ok: findings.every((f) => f.level !== 'fail'),
      version: id.version,
      pid: id.pid,
      bootEpoch: id.bootEpoch,
      uptimeS: id.uptime,
      clockSkewS: Math.round(skew * 10) / 10,
      rttMs: Math.round(rttMs * 1000) / 1000,
      findings,
    }
  } catch (err) {
    findings.push({ level: 'fail', check: 'reachable', detail: describeError(err), fix: 'check the address, that memcached runs, and --tls/--username' })
    return { server: conn.name, ok: false, findings }
  } finally {
    await client.close()
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}
