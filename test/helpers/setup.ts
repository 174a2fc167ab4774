/**
 * Preloaded before every test file (`node --import ./test/helpers/setup.ts`).
 * An unhandled rejection or uncaught exception anywhere fails the run loudly
 * instead of being swallowed or attributed to whichever test happens to run.
 */
import { inspect } from 'node:util';

function fail(prefix: string, err: unknown): never {
  // process.stderr is synchronous for files, TTYs and pipes on Linux, so this
  // is written out before the process exits.
  process.stderr.write(`${prefix} ${inspect(err, { depth: 6 })}\n`);
  process.exitCode = 1;
  process.exit(1);
}

process.on('unhandledRejection', (reason) => fail('UNHANDLED REJECTION:', reason));
process.on('uncaughtException', (err) => fail('UNCAUGHT EXCEPTION:', err));
