import { after } from 'node:test';

import { MemcachedStore } from '../../src/index.js';
import { serverTtlSeconds } from '../../src/store/ttl.js';
import { MemcachedServer } from '../helpers/memcached-server.js';
import { sleep } from '../helpers/util.js';
import { storeContract } from './store-contract.js';

// One server for the whole suite (tests in a file run one after another). `-o temporary_ttl=120`
// puts lock keys in the temporary LRU, which is never evicted, as the README asks of production
// servers (memcached 1.6.18 rejects a `temp_lru` suboption: `temporary_ttl` alone turns it on).
let server: MemcachedServer | undefined;
after(async () => {
  await server?.stop();
});

storeContract('memcached store', async () => {
  server ??= await MemcachedServer.start({ args: ['-o', 'temporary_ttl=120'] });
  const s = server;
  const warnings: string[] = [];
  const store = new MemcachedStore({ servers: s.address, prefix: 'contract:', onWarning: (m) => warnings.push(m) });
  return {
    store,
    restart: () => s.restart(),
    // an item stored with T lives up to T seconds by the server's clock, which ticks once a second
    elapse: (ms) => sleep(serverTtlSeconds(ms) * 1000 + 500),
    cleanup: async () => {
      await store.close();
      if (warnings.length > 0) throw new Error(`unexpected eviction warning: ${warnings.join('; ')}`);
    },
  };
});
