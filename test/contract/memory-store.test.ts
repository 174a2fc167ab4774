import { MemoryStore } from '../../src/index.js';
import { FakeClock } from '../helpers/util.js';
import { storeContract } from './store-contract.js';

storeContract('memory store', async () => {
  const clock = new FakeClock();
  const store = new MemoryStore({ clock });
  return {
    store,
    restart: async () => store.simulateRestart(),
    elapse: async (ms) => clock.advance(ms),
    cleanup: () => store.close(),
  };
});
