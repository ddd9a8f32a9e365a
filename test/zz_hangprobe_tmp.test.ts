import { createTestDatabase } from './helpers/postgres.js';
import { startTestServer } from './helpers/server.js';
describe('hang probe', function () {
  this.timeout(120000);
  it('start/close', async () => {
    const t0 = Date.now();
    const url = await createTestDatabase();
    console.log('db', Date.now() - t0);
    const s = await startTestServer(url);
    console.log('started', Date.now() - t0);
    await fetch(`${s.url}/metrics`);
    console.log('scraped', Date.now() - t0);
    await s.close();
    console.log('closed', Date.now() - t0);
    setTimeout(() => console.log('resources', process.getActiveResourcesInfo()), 2000).unref();
  });
});
