/**
 * Starts a private memcached for the demo and the quick benchmark: from `MEMCACHED_BIN` or PATH,
 * on a free loopback port, stopped by its PID. Never touches any other process.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import net from 'node:net'
import path from 'node:path'

export interface LocalMemcached {
  readonly address: string
  readonly pid: number
  stop(): Promise<void>
}

/** Path of a memcached binary, or null when none is installed. */
export function findMemcached(env: NodeJS.ProcessEnv = process.env): string | null {
  const candidates = env.MEMCACHED_BIN ? [env.MEMCACHED_BIN] : (env.PATH ?? '').split(path.delimiter).filter(Boolean).map((d) => path.join(d, 'memcached'))
  if (!env.MEMCACHED_BIN) candidates.push('/usr/bin/memcached', '/usr/local/bin/memcached', '/opt/homebrew/bin/memcached')
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK)
      return c
    } catch {
      // not here
    }
  }
  return null
}

export async function startLocalMemcached(bin: string, extraArgs: readonly string[] = ['-M', '-m', '64']): Promise<LocalMemcached> {
  const port = await freePort()
  const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', ...extraArgs]
  if (process.getuid?.() === 0) args.push('-u', 'nobody')
  const child: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const killOnExit = (): void => {
    child.kill('SIGKILL')
  }
  // 'exit' does not fire when a signal ends the process (kill, Ctrl-C of the parent alone):
  // stop the server, then let the signal end the process as it would have
  const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
  const onSignal = (signal: NodeJS.Signals): void => {
    unhook()
    killOnExit()
    process.kill(process.pid, signal)
  }
  const unhook = (): void => {
    process.off('exit', killOnExit)
    for (const s of SIGNALS) process.off(s, onSignal)
  }
  process.once('exit', killOnExit)
  for (const s of SIGNALS) process.once(s, onSignal)
  const stop = async (): Promise<void> => {
    unhook()
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  }
  const deadline = Date.now() + 5000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`memcached exited at start: ${stderr.trim() || `code ${child.exitCode}`}`)
    if (await answers(port)) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`memcached did not answer on port ${port} within 5 s: ${stderr.trim()}`)
    }
    await new Promise((r) => setTimeout(r, 30))
  }
  return { address: `127.0.0.1:${port}`, pid: child.pid as number, stop }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port })
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(500, () => done(false))
    s.once('error', () => done(false))
    s.once('connect', () => s.write('version\r\n'))
    s.once('data', (d) => done(d.toString().startsWith('VERSION')))
  })
}
