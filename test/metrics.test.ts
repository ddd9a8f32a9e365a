import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { RunningServer } from '../lib/server.js';
import { captureLogs } from './helpers/logCapture.js';
import { useNode } from './helpers/nodes.js';
import { sampleValue, scrape } from './helpers/prometheus.js';
import { startProxy, type FaultProxy } from './helpers/proxy.js';
import { startTestServer } from './helpers/server.js';
import { expectOk, friendsOf, newUser, send } from './helpers/chat.js';
import { expectAckError } from './helpers/errors.js';
import { request } from './helpers/http.js';
import { connectSocket } from './helpers/sockets.js';
import { insertUser } from './helpers/users.js';
import { waitFor } from './helpers/waitFor.js';

describe('metrics and logs', function () {
  this.timeout(30_000);
  const logs = captureLogs('debug');
  const node = useNode({
    env: { SLOW_QUERY_MS: '40', LOG_LEVEL: 'debug' },
    logger: logs.logger,
    second: {},
  });
  const { server: a, second: b, pool } = node;

  it('serves the Prometheus text format with process, pool and application metrics', async () => {
    const res = await fetch(`${a.url}/metrics`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of [
      'xfchat_process_cpu_user_seconds_total',
      'xfchat_nodejs_eventloop_lag_seconds',
      'xfchat_messages_persisted_total',
      'xfchat_batch_size_bucket',
      'xfchat_mailbox_depth',
      'xfchat_live_actors',
      'xfchat_connected_sockets',
      'xfchat_write_concurrency',
      'xfchat_write_busy_total',
      'xfchat_write_held_up_total',
      'xfchat_db_pool_total',
      'xfchat_db_pool_idle',
      'xfchat_db_pool_used',
      'xfchat_db_pool_waiting',
      'xfchat_db_slow_queries_total',
    ]) {
      expect(text, name).to.match(new RegExp(`^${name}[ {]`, 'm'));
    }
    // Labelled series appear once observed; their type is declared from the start.
    expect(text).to.include('# TYPE xfchat_ack_latency_seconds histogram');
    expect(text).to.include('# TYPE xfchat_db_errors_total counter');
    expect(text).to.include('# TYPE xfchat_sends_rejected_total counter');
    expect(text).to.include('# TYPE xfchat_http_requests_total counter');
    expect(text).to.include('# TYPE xfchat_http_request_duration_seconds histogram');
  });

  it('records persisted messages, batch sizes, ack latency and live actors; logs never carry a message body', async () => {
    const owner = await newUser(a);
    const [friend] = await friendsOf(a, owner, 1);
    const created = await request<{ conversation: { id: string } }>(a.url, 'POST', '/conversations', {
      token: owner.token,
      body: { type: 'direct', userId: friend!.id },
    });
    expect(created.status).to.equal(201);
    const conversationId = created.body.conversation.id;
    const socket = await pool.open(a.url, owner);
    const secretBody = `body-${randomUUID()}`;
    const before = await scrape(a.url);
    const acks = await Promise.all(Array.from({ length: 5 }, () => send(socket, conversationId, secretBody)));
    for (const ack of acks) expectOk(ack);

    const after = await scrape(a.url);
    const delta = (name: string, labels: Record<string, string> = {}) =>
      (sampleValue(after, name, labels) ?? 0) - (sampleValue(before, name, labels) ?? 0);
    expect(delta('xfchat_messages_persisted_total')).to.equal(5);
    expect(delta('xfchat_ack_latency_seconds_count', { outcome: 'ok' })).to.equal(5);
    expect(delta('xfchat_batch_size_sum')).to.equal(5);
    expect(delta('xfchat_batch_size_count')).to.be.within(1, 5);
    expect(sampleValue(after, 'xfchat_live_actors')).to.be.at.least(1);
    expect(sampleValue(after, 'xfchat_mailbox_depth')).to.equal(0);
    expect(logs.text()).not.to.include(secretBody);
  });

  it('reads the app pool at scrape time: open connections and nobody waiting', async () => {
    await a.services.db.knex.raw('SELECT 1');
    const samples = await scrape(a.url);
    expect(sampleValue(samples, 'xfchat_db_pool_total')).to.be.at.least(1);
    expect(sampleValue(samples, 'xfchat_db_pool_idle')).to.be.at.least(1);
    expect(sampleValue(samples, 'xfchat_db_pool_waiting')).to.equal(0);

    // Hold a connection in a transaction: "used" sees it while it is held.
    const trx = await a.services.db.knex.transaction();
    try {
      await trx.raw('SELECT 1');
      const during = await scrape(a.url);
      expect(sampleValue(during, 'xfchat_db_pool_used')).to.be.at.least(1);
    } finally {
      await trx.rollback();
    }
  });

  it('counts HTTP requests by route pattern and status, never by raw URL', async () => {
    for (let i = 0; i < 3; i++) expect((await fetch(`${a.url}/healthz`)).status).to.equal(200);
    const id = randomUUID();
    expect((await fetch(`${a.url}/no/such/thing/${id}`)).status).to.equal(404);
    const res = await fetch(`${a.url}/metrics`);
    const text = await res.text();
    const samples = await scrape(a.url);
    expect(
      sampleValue(samples, 'xfchat_http_requests_total', { method: 'GET', route: '/healthz', status: '200' }),
    ).to.equal(3);
    expect(
      sampleValue(samples, 'xfchat_http_requests_total', { route: '(unmatched)', status: '404' }),
    ).to.be.at.least(1);
    expect(
      sampleValue(samples, 'xfchat_http_request_duration_seconds_count', {
        route: '/healthz',
        status: '200',
      }),
    ).to.equal(3);
    expect(text).not.to.include(id);
  });

  it('labels parameterised routes by their pattern, also when the handler fails', async () => {
    const user = await newUser(a);
    const ids = [randomUUID(), randomUUID()];
    for (const id of ids) {
      expect((await request(a.url, 'GET', `/conversations/${id}`, { token: user.token })).status).to.equal(
        404,
      );
    }
    const text = await (await fetch(`${a.url}/metrics`)).text();
    const samples = await scrape(a.url);
    expect(
      sampleValue(samples, 'xfchat_http_requests_total', {
        method: 'GET',
        route: '/conversations/:id',
        status: '404',
      }),
    ).to.equal(2);
    for (const id of ids) expect(text).not.to.include(id);
  });

  it('keeps a registry per node: requests to one node are not counted by another', async () => {
    const before = sampleValue(await scrape(b.url), 'xfchat_http_requests_total', { route: '/readyz' }) ?? 0;
    for (let i = 0; i < 4; i++) await fetch(`${a.url}/readyz`);
    const after = sampleValue(await scrape(b.url), 'xfchat_http_requests_total', { route: '/readyz' }) ?? 0;
    expect(after).to.equal(before);
    expect(
      sampleValue(await scrape(a.url), 'xfchat_http_requests_total', { route: '/readyz', status: '200' }),
    ).to.be.at.least(4);
  });

  it('gauges connected sockets at scrape time', async () => {
    const user = await insertUser(a.services.db.knex, a.services.config);
    const connected = async () => sampleValue(await scrape(a.url), 'xfchat_connected_sockets');
    expect(await connected()).to.equal(0);
    pool.track(await connectSocket(a.url, user.token));
    const second = pool.track(await connectSocket(a.url, user.token));
    expect(await connected()).to.equal(2);
    second.close();
    await waitFor(async () => (await connected()) === 1, { what: 'the gauge to drop to 1' });
  });

  it('counts database errors by SQLSTATE and slow queries, and logs statements without their values', async () => {
    const knex = a.services.db.knex;
    const secretA = `secret-${randomUUID()}`;
    const secretB = `secret-${randomUUID()}`;
    const errorsBefore = sampleValue(await scrape(a.url), 'xfchat_db_errors_total', { code: '42P01' }) ?? 0;
    const slowBefore = sampleValue(await scrape(a.url), 'xfchat_db_slow_queries_total') ?? 0;

    let failed = false;
    try {
      await knex.raw('SELECT * FROM no_such_table_for_metrics WHERE name = ?', [secretA]);
    } catch {
      failed = true;
    }
    expect(failed).to.equal(true);
    await knex.raw('SELECT pg_sleep(0.1), ?::text AS v', [secretB]);

    const samples = await scrape(a.url);
    expect(sampleValue(samples, 'xfchat_db_errors_total', { code: '42P01' })).to.equal(errorsBefore + 1);
    // At least ours: a node's background reads (a catch-up of its subscribers) may be slow too under load.
    expect(sampleValue(samples, 'xfchat_db_slow_queries_total')).to.be.at.least(slowBefore + 1);

    const entries = logs.entries();
    const slow = entries.filter((e) => e.msg === 'slow query');
    expect(slow.map((e) => e.sql)).to.include('SELECT pg_sleep(0.1), $1::text AS v');
    expect(
      entries.some((e) => e.msg === 'query' && String(e.sql).includes('no_such_table_for_metrics')),
    ).to.equal(true);
    expect(logs.text()).not.to.include(secretA);
    expect(logs.text()).not.to.include(secretB);
  });

  it('counts the named statements too (the write calls, the notifications): failures by SQLSTATE, slow runs by name', async () => {
    const { knex, connections } = a.services.db;
    // A write call that fails inside PostgreSQL: a trigger refuses one marked body with a SQLSTATE of its own.
    const marked = `refused-for-metrics-${randomUUID()}`;
    await knex.raw(`CREATE FUNCTION refuse_for_metrics() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.body LIKE 'refused-for-metrics-%' THEN RAISE EXCEPTION 'refused by the metrics test' USING ERRCODE = 'XF001'; END IF;
        RETURN NEW;
      END $$`);
    await knex.raw(
      'CREATE TRIGGER refuse_for_metrics BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_for_metrics()',
    );
    try {
      const owner = await newUser(a);
      const [friend] = await friendsOf(a, owner, 1);
      const created = await request<{ conversation: { id: string } }>(a.url, 'POST', '/conversations', {
        token: owner.token,
        body: { type: 'direct', userId: friend!.id },
      });
      const socket = await pool.open(a.url, owner);
      const before = await scrape(a.url);
      expectAckError(await send(socket, created.body.conversation.id, marked), 'INTERNAL');
      const after = await scrape(a.url);
      // One call, of this one send: it failed once, and the error was counted once.
      expect(sampleValue(after, 'xfchat_db_errors_total', { code: 'XF001' })).to.equal(
        (sampleValue(before, 'xfchat_db_errors_total', { code: 'XF001' }) ?? 0) + 1,
      );
    } finally {
      await knex.raw('DROP TRIGGER refuse_for_metrics ON messages');
      await knex.raw('DROP FUNCTION refuse_for_metrics()');
    }

    // A slow named statement, on a connection of the pool as the writer and the control bus send theirs.
    const secret = `secret-${randomUUID()}`;
    const slowBefore = sampleValue(await scrape(a.url), 'xfchat_db_slow_queries_total') ?? 0;
    const client = await connections.acquire();
    try {
      const result = await connections.observed(client).query<{ v: string }>({
        name: 'metrics_test_slow_v1',
        text: 'SELECT pg_sleep(0.1), $1::text AS v',
        values: [secret],
      });
      expect(result.rows[0]?.v).to.equal(secret);
    } finally {
      connections.release(client);
    }
    expect(sampleValue(await scrape(a.url), 'xfchat_db_slow_queries_total')).to.be.at.least(slowBefore + 1);
    const slow = logs
      .entries()
      .filter((e) => e.msg === 'slow query' && e.statement === 'metrics_test_slow_v1');
    expect(slow).to.have.length(1);
    expect(slow[0]).to.include({ failed: false });
    // Every one logged at debug by its name: here the refused send's call.
    expect(logs.entries().some((e) => e.msg === 'query' && e.statement === 'xfchat_send_one_v3')).to.equal(
      true,
    );
    expect(logs.text()).not.to.include(secret);
    expect(logs.text()).not.to.include(marked);
  });

  it('[STARTUP] lines report the database: connected, server version, TLS and pool', () => {
    const line = logs
      .entries()
      .map((e) => String(e.msg))
      .find((m) => m.startsWith('[STARTUP] database'));
    const dbName = new URL(node.databaseUrl).pathname.slice(1);
    expect(line).to.be.a('string');
    expect(line).to.include(`/${dbName}: connected, PostgreSQL `);
    expect(line).to.include('TLS off (DB_SSL_MODE=disable)');
    expect(line).to.match(/pool max \d+$/);
  });

  describe('with the database cut off', () => {
    let proxy: FaultProxy | undefined;
    let c: RunningServer | undefined;

    after(async () => {
      await c?.close();
      await proxy?.close();
    });

    it('counts failed connection attempts under their socket error code', async () => {
      proxy = await startProxy(node.databaseUrl);
      c = await startTestServer(proxy.urlThrough(node.databaseUrl), {
        DB_ACQUIRE_TIMEOUT_MS: '500',
        DB_CONNECT_TIMEOUT_MS: '500',
      });
      // Idle pool connections die with the proxy; new ones are refused.
      await proxy.stop();
      expect((await fetch(`${c.url}/readyz`)).status).to.equal(503);
      const samples = await scrape(c.url);
      const refusals = samples
        .filter((s) => s.name === 'xfchat_db_errors_total')
        .reduce((sum, s) => sum + s.value, 0);
      expect(refusals).to.be.at.least(1);
      expect(
        samples.some(
          (s) =>
            s.name === 'xfchat_db_errors_total' &&
            /^(ECONNREFUSED|ECONNRESET|POOL_TIMEOUT|57P01|08006|other)$/.test(s.labels.code ?? ''),
        ),
      ).to.equal(true);
      await proxy.start();
      await waitFor(async () => (await fetch(`${c!.url}/readyz`)).status === 200, {
        what: '/readyz 200 again',
      });
    });
  });
});
