import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { connectionPorts, costByKind, pgProcessKind, type PgActivityRow } from '../../bench/pgProcesses.js';
import { CONTROL_APPLICATION_NAME } from '../../lib/cluster/controlBus.js';
import { POOL_APPLICATION_NAME } from '../../lib/db.js';
import { ADAPTER_APPLICATION_NAME } from '../../lib/realtime/adapterPool.js';

const client = (pid: number, applicationName: string | null, clientPort: number | null): PgActivityRow => ({
  pid,
  backendType: 'client backend',
  applicationName,
  clientPort,
});

describe("bench: PostgreSQL's processes by what they served", () => {
  const nodePorts = new Set([40001, 40002, 40003, 40004]);

  it("names a node's connection by its application_name, and only a node's", () => {
    expect(pgProcessKind(client(1, POOL_APPLICATION_NAME, 40001), false, nodePorts)).to.equal('pool');
    expect(pgProcessKind(client(2, CONTROL_APPLICATION_NAME, 40002), false, nodePorts)).to.equal('control');
    expect(pgProcessKind(client(3, ADAPTER_APPLICATION_NAME, 40003), false, nodePorts)).to.equal('adapter');
    expect(pgProcessKind(client(4, 'psql', 40004), false, nodePorts)).to.equal('other');
    // The bench's own Knex pool has the nodes' application_name, but not one of their ports.
    expect(pgProcessKind(client(5, POOL_APPLICATION_NAME, 50000), false, nodePorts)).to.equal('other');
    // A connection over a Unix socket has no port.
    expect(pgProcessKind(client(6, POOL_APPLICATION_NAME, null), false, nodePorts)).to.equal('other');
  });

  it("counts PostgreSQL's own processes as background, and a process pg_stat_activity no longer lists as other", () => {
    const walwriter: PgActivityRow = {
      pid: 7,
      backendType: 'walwriter',
      applicationName: '',
      clientPort: null,
    };
    expect(pgProcessKind(walwriter, false, nodePorts)).to.equal('background');
    // The postmaster is not in pg_stat_activity.
    expect(pgProcessKind(undefined, true, nodePorts)).to.equal('background');
    expect(pgProcessKind(undefined, false, nodePorts)).to.equal('other');
  });

  it("adds up each kind's runs and CPU", () => {
    const activity = new Map<number, PgActivityRow>([
      [11, client(11, POOL_APPLICATION_NAME, 40001)],
      [12, client(12, POOL_APPLICATION_NAME, 40002)],
      [13, client(13, CONTROL_APPLICATION_NAME, 40003)],
      [14, { pid: 14, backendType: 'checkpointer', applicationName: '', clientPort: null }],
    ]);
    const costs = costByKind(
      [
        { pid: 11, runs: 10, cpuMs: 4 },
        { pid: 12, runs: 5, cpuMs: 6 },
        { pid: 13, runs: 3, cpuMs: 1 },
        { pid: 14, runs: 2, cpuMs: 0.5 },
        { pid: 10, runs: 1, cpuMs: 0.2 },
        { pid: 99, runs: 7, cpuMs: 3 },
      ],
      activity,
      10,
      nodePorts,
    );
    expect(costs).to.deep.equal({
      pool: { runs: 15, cpuMs: 10 },
      control: { runs: 3, cpuMs: 1 },
      adapter: { runs: 0, cpuMs: 0 },
      background: { runs: 3, cpuMs: 0.7 },
      other: { runs: 7, cpuMs: 3 },
    });
  });

  it("reads a process's connections' local ports from /proc, and not its listening ones", async function () {
    if (!existsSync('/proc/self/net/tcp')) this.skip();
    const listen = async () => {
      const server = net.createServer();
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      return { server, port: (server.address() as net.AddressInfo).port };
    };
    const connected = await listen();
    const idle = await listen();
    const socket = net.connect(connected.port, '127.0.0.1');
    try {
      await once(socket, 'connect');
      const ports = await connectionPorts([process.pid]);
      expect(ports.has(socket.localPort!)).to.equal(true);
      // Only listening, with no connection: not a connection's port.
      expect(ports.has(idle.port)).to.equal(false);
      // A process that has exited holds none, and does not hide the others'.
      const exited = spawn(process.execPath, ['-e', '']);
      await once(exited, 'exit');
      const withGone = await connectionPorts([exited.pid!, process.pid]);
      expect(withGone.has(socket.localPort!)).to.equal(true);
    } finally {
      socket.destroy();
      connected.server.close();
      idle.server.close();
    }
  });
});
