/**
 * The examples in `examples/` run against a real, eviction-safe memcached and end right. They
 * import the package by its name (`memcached-lock`), so they need `npm run build`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { main as casExample } from '../../examples/serializer-memcached-cas.js';
import { main as sqliteExample } from '../../examples/serializer-sqlite.js';
import { MemcachedServer } from '../helpers/memcached-server.js';

let server: MemcachedServer;

before(async () => {
  server = await MemcachedServer.start({ args: ['-M'] });
});
after(async () => {
  await server.stop();
});

describe('examples', () => {
  test('examples - memcached CAS: every increment lands, none conflicts under the serializer', async () => {
    const r = await casExample({ servers: server.address });
    assert.equal(r.final, r.expected);
    assert.equal(r.conflictsWith, 0);
  });

  test('examples - memcached CAS: two runs at once on one server stay apart', async () => {
    const [a, b] = await Promise.all([
      casExample({ servers: server.address, workers: 3, updates: 5 }),
      casExample({ servers: server.address, workers: 3, updates: 5 }),
    ]);
    for (const r of [a, b]) {
      assert.equal(r.final, r.expected);
      assert.equal(r.conflictsWith, 0);
    }
  });

  test('examples - SQLite with a version column: the balance is right', async () => {
    const r = await sqliteExample({ servers: server.address });
    assert.equal(r.balance, r.expected);
    assert.equal(r.runs, 5 * 10);
  });
});
