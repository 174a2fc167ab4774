/**
 * A resource guarded by fencing tokens, as the README asks users to build: it accepts a write
 * only if its fence is >= the highest fence it has accepted for that key. It lives in the test
 * (parent) process; child workers reach it over their IPC channel (`serveResource` in the
 * parent, `ResourceClient` in the worker). Every answer is recorded as a `write` event, in the
 * resource's own order (`seq`), for check (d) of the checker.
 *
 * `checkFences: false` makes a naive resource that accepts everything: the checker test uses it
 * to show that check (d) catches stale writes.
 */
import type { ChildProcess } from 'node:child_process';

import { wallNow, type Recorder, type WriteEvent } from './recorder.js';

export class GuardedResource {
  readonly #highest = new Map<string, bigint>();
  readonly #checkFences: boolean;
  #seq = 0;
  accepted = 0;
  rejected = 0;

  constructor(
    readonly recorder: Recorder,
    options: { checkFences?: boolean } = {},
  ) {
    this.#checkFences = options.checkFences ?? true;
  }

  /** Applies a write of `holder` (fence `fence`) to `key`: true when accepted. */
  write(key: string, holder: string, fence: bigint): boolean {
    const highest = this.#highest.get(key);
    const accepted = !this.#checkFences || highest === undefined || fence >= highest;
    if (accepted && (highest === undefined || fence > highest)) this.#highest.set(key, fence);
    if (accepted) this.accepted++;
    else this.rejected++;
    const event: WriteEvent = { type: 'write', key, holder, fence: fence.toString(), t: wallNow(), accepted, seq: ++this.#seq };
    this.recorder.record(event);
    return accepted;
  }
}

/** The IPC messages between a worker and the parent's resource. */
export interface WriteRequest {
  kind: 'resource-write';
  id: number;
  key: string;
  holder: string;
  fence: string;
}
export interface WriteAnswer {
  kind: 'resource-answer';
  id: number;
  accepted: boolean;
}

/** Parent side: answers a child's write requests from `resource`. */
export function serveResource(child: ChildProcess, resource: GuardedResource): void {
  child.on('message', (msg: unknown) => {
    const m = msg as Partial<WriteRequest> | null;
    if (!m || m.kind !== 'resource-write' || typeof m.id !== 'number') return;
    const accepted = resource.write(String(m.key), String(m.holder), BigInt(String(m.fence)));
    if (child.connected) {
      const answer: WriteAnswer = { kind: 'resource-answer', id: m.id, accepted };
      child.send(answer, () => {});
    }
  });
}

/** Worker side: writes to the parent's resource over the IPC channel. */
export class ResourceClient {
  #next = 0;
  readonly #pending = new Map<number, (accepted: boolean | null) => void>();

  constructor() {
    process.on('message', (msg: unknown) => {
      const m = msg as Partial<WriteAnswer> | null;
      if (!m || m.kind !== 'resource-answer' || typeof m.id !== 'number') return;
      const done = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      done?.(m.accepted === true);
    });
    process.on('disconnect', () => {
      for (const done of this.#pending.values()) done(null);
      this.#pending.clear();
    });
  }

  /** True when accepted, false when rejected, null when the parent is gone or did not answer within `timeoutMs`. */
  write(key: string, holder: string, fence: bigint, timeoutMs = 5_000): Promise<boolean | null> {
    if (!process.send || !process.connected) return Promise.resolve(null);
    const id = ++this.#next;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(null);
      }, timeoutMs);
      this.#pending.set(id, (accepted) => {
        clearTimeout(timer);
        resolve(accepted);
      });
      const req: WriteRequest = { kind: 'resource-write', id, key, holder, fence: fence.toString() };
      process.send!(req, undefined, {}, () => {});
    });
  }
}
