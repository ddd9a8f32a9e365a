import { createServer, type Server as HttpServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { expect } from 'chai';
import { timeOutSilentConnections } from '../../lib/server.js';
import { startProxy, type FaultProxy } from '../helpers/proxy.js';
import { waitFor } from '../helpers/waitFor.js';

/**
 * An answer the client stops reading (a REST answer, a long-poll's) stays in the node's memory while its bytes
 * wait for the client: the connection is closed once it has taken nothing for HTTP_IDLE_TIMEOUT_MS.
 */
describe('HTTP answers the client does not read (timeOutSilentConnections)', function () {
  this.timeout(30_000);
  let http: HttpServer;
  let proxy: FaultProxy;
  const clients: Socket[] = [];
  /** The node's side of each connection, in order. */
  const accepted: Socket[] = [];

  beforeEach(async () => {
    http = createServer((_req, res) => res.end(Buffer.alloc(32 * 1024 * 1024, 'x')));
    timeOutSilentConnections(http, 1000);
    http.on('connection', (socket: Socket) => accepted.push(socket));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    proxy = await startProxy(`http://127.0.0.1:${(http.address() as AddressInfo).port}`);
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    accepted.length = 0;
    await proxy.close();
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });

  async function request(stalled: boolean): Promise<void> {
    const client = connect(proxy.port, '127.0.0.1');
    clients.push(client);
    client.on('data', () => undefined);
    await new Promise((resolve) => client.once('connect', resolve));
    if (stalled) proxy.connections.at(-1)!.stall('downstream');
    client.write('GET / HTTP/1.1\r\nHost: xfchat.test\r\n\r\n');
  }

  it('closes the connection of an answer written whole and not read for the idle timeout', async () => {
    await request(true);
    // (The proxy, which stopped reading, would not see the close.)
    await waitFor(() => accepted.at(-1)?.destroyed === true, { what: 'the node to close the connection' });
  });

  it('leaves a client that reads its answer alone', async () => {
    await request(false);
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(accepted.at(-1)?.destroyed).to.equal(false);
  });
});
