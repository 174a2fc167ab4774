// N worker processes driven over IPC; each is tracked so it is stopped by PID whatever happens.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { track } from './servers.mjs'

const WORKER = fileURLToPath(new URL('../workers/lock-worker.mjs', import.meta.url))

export class WorkerPool {
  #workers = []
  #nextId = 1

  static async start(n, args) {
    const pool = new WorkerPool()
    await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const child = fork(WORKER, [...args, String(i)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
        track(child, `worker ${i}`)
        pool.#workers.push(child)
        return new Promise((resolve, reject) => {
          child.once('message', (m) => (m?.ready ? resolve() : reject(new Error(`worker ${i}: ${JSON.stringify(m)}`))))
          child.once('exit', (code) => reject(new Error(`worker ${i} exited with code ${code} before it was ready`)))
        })
      }),
    )
    return pool
  }

  get size() {
    return this.#workers.length
  }

  /** Sends `task(i)` to every worker i; resolves with their results in worker order. */
  runAll(task) {
    return Promise.all(this.#workers.map((w, i) => this.#run(w, task(i))))
  }

  #run(worker, task) {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const onMessage = (m) => {
        if (m?.id !== id) return
        cleanup()
        if (m.error) reject(new Error(`worker ${worker.pid}: ${m.error}`))
        else resolve(m.result)
      }
      const onExit = (code) => {
        cleanup()
        reject(new Error(`worker ${worker.pid} exited (code ${code}) during ${task.type}`))
      }
      const cleanup = () => {
        worker.off('message', onMessage)
        worker.off('exit', onExit)
      }
      worker.on('message', onMessage)
      worker.on('exit', onExit)
      worker.send({ ...task, id })
    })
  }

  async stop() {
    await Promise.all(
      this.#workers.map(
        (w) =>
          new Promise((resolve) => {
            if (w.exitCode !== null || w.signalCode !== null) return resolve()
            const t = setTimeout(() => w.kill('SIGKILL'), 3000)
            w.once('exit', () => {
              clearTimeout(t)
              resolve()
            })
            w.send({ type: 'exit' })
          }),
      ),
    )
  }
}
