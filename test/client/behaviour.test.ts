import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { XFChatError } from '../../lib/client/index.js';
import { PROJECT_ROOT } from '../helpers/childProcess.js';
import { useNode } from '../helpers/nodes.js';
import { waitFor } from '../helpers/waitFor.js';
import { directPair, storedMessages, useClientPool } from './fixtures.js';

/** Runs `node --import tsx <script> ...args` and resolves with its exit code, output and duration. */
function runScript(
  script: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`${script} did not exit within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`),
      );
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}

describe('client SDK: lifecycle, send order and misuse', function () {
  // Sends are rate limited as in production (a burst of 120, then 60 a second), so that 300 sends at once
  // meet RATE_LIMITED and retry: the order must survive that.
  const { server } = useNode({ env: { RATE_LIMIT_MESSAGES_PER_SEC: '60' } });
  const pool = useClientPool();

  it('lets a script exit by itself after close(): no socket, timer or connection is left open', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const result = await runScript(
      'test/client/closeAndExit.ts',
      [server.url, alice.token, conversationId],
      15_000,
    );
    expect(result.stderr).to.equal('');
    expect(result.stdout).to.equal('closed after seq 1\n');
    expect(result.code).to.equal(0);
    // Node starts in about a second here; an open handle would keep it alive until the 15 s timeout.
    expect(result.ms).to.be.below(10_000);
  });

  it('lets a script exit by itself after close() during the renewal of a refused token: no retry is left behind', async () => {
    const username = `script_${randomUUID().slice(0, 8)}`;
    const result = await runScript('test/client/closeDuringRenewal.ts', [server.url, username], 20_000);
    expect(result.stderr).to.equal('');
    expect(result.stdout).to.equal('connect: CLIENT_CLOSED\n');
    expect(result.code).to.equal(0);
    // The script's backoff is a minute: a retry timer left behind would keep it alive past the 20 s timeout.
    expect(result.ms).to.be.below(10_000);
  });

  it('lets a script that logged in but never connected exit without close(): the timed refresh holds nothing open', async () => {
    const username = `script_${randomUUID().slice(0, 8)}`;
    const result = await runScript('test/client/loggedInExit.ts', [server.url, username], 15_000);
    expect(result.stderr).to.equal('');
    expect(result.stdout).to.equal(`signed up as ${username}, refresh token kept: true\n`);
    expect(result.code).to.equal(0);
    // The next refresh is minutes away (JWT_TTL_SECONDS, 900 by default): a timer holding the process would keep
    // it alive past the 15 s timeout.
    expect(result.ms).to.be.below(10_000);
  });

  it('rejects send() before connect() at once with NOT_CONNECTED, and stores nothing', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const client = pool.open(server.url, { token: alice.token });
    const started = performance.now();
    const error = await client.send(conversationId, 'too early').catch((err: unknown) => err);
    expect(performance.now() - started).to.be.below(100);
    expect(error).to.be.instanceOf(XFChatError).and.include({ code: 'NOT_CONNECTED', status: 0 });
    // Once connected, the same client sends normally.
    await client.connect();
    const message = await client.send(conversationId, 'in time');
    expect((await storedMessages(server, conversationId)).map((m) => m.body)).to.deep.equal(['in time']);
    expect(message.seq).to.equal(1);
  });

  it('stores 300 concurrent sends exactly once and in call order, across RATE_LIMITED retries, with no warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const { alice, conversationId } = await directPair(server, pool);
      const client = pool.open(server.url, { token: alice.token });
      await client.connect();
      const retries: string[] = [];
      const bodies = Array.from({ length: 300 }, (_, i) => `message ${i + 1}`);
      const sent = await Promise.all(
        bodies.map((body) => client.send(conversationId, body, { onRetry: (r) => retries.push(r.reason) })),
      );
      expect(retries).to.include('RATE_LIMITED');
      expect(sent.map((m) => m.seq)).to.deep.equal(bodies.map((_, i) => i + 1));
      const stored = await storedMessages(server, conversationId);
      expect(stored.map((m) => m.body)).to.deep.equal(bodies);
      expect(stored.map((m) => m.seq)).to.deep.equal(bodies.map((_, i) => i + 1));
      expect(stored.map((m) => m.id)).to.deep.equal(sent.map((m) => m.id));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).to.deep.equal([]);
  });

  it('rejects the sends still queued when close() is called, and sends none of them', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const client = pool.open(server.url, { token: alice.token });
    await client.connect();
    const first = client.send(conversationId, 'before close');
    const queued = Array.from({ length: 20 }, (_, i) => client.send(conversationId, `queued ${i}`));
    const outcomes = Promise.allSettled([first, ...queued]);
    client.close();
    const settled = await outcomes;
    for (const outcome of settled.slice(1)) {
      expect(outcome.status).to.equal('rejected');
      if (outcome.status === 'rejected')
        expect(outcome.reason).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
    }
    // The first may or may not have reached the server before close(); nothing after it was sent.
    const stored = await storedMessages(server, conversationId);
    expect([[], ['before close']]).to.deep.include(stored.map((m) => m.body));
  });

  it('rejects send() and connect() after close() with CLIENT_CLOSED', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const client = pool.open(server.url, { token: alice.token });
    await client.connect();
    client.close();
    for (const call of [client.send(conversationId, 'too late'), client.connect()]) {
      const error = await call.catch((err: unknown) => err);
      expect(error).to.be.instanceOf(XFChatError).and.include({ code: 'CLIENT_CLOSED' });
    }
    expect(await storedMessages(server, conversationId)).to.deep.equal([]);
  });

  it('refuses subscribe() after close() with CLIENT_CLOSED, and a subscribe() without a callback', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const client = pool.open(server.url, { token: alice.token });
    const refusal = (run: () => unknown): unknown => {
      try {
        run();
      } catch (err) {
        return err;
      }
      return undefined;
    };
    expect(refusal(() => client.subscribe(conversationId, 'not a function' as never)))
      .to.be.instanceOf(XFChatError)
      .and.include({ code: 'VALIDATION_FAILED' });
    client.close();
    // It spun the event loop before (a subscription whose start failed with CLIENT_CLOSED started again at once):
    // a timer still fires after it.
    expect(refusal(() => client.subscribe(conversationId, () => undefined)))
      .to.be.instanceOf(XFChatError)
      .and.include({ code: 'CLIENT_CLOSED' });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(client.subscription(conversationId)).to.equal(undefined);
  });

  it('refuses a second subscription to one conversation with ALREADY_SUBSCRIBED', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const client = pool.open(server.url, { token: alice.token });
    await client.connect();
    const first = client.subscribe(conversationId, () => undefined);
    await first.whenReady();
    let error: unknown;
    try {
      client.subscribe(conversationId, () => undefined);
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(XFChatError).and.include({ code: 'ALREADY_SUBSCRIBED', status: 0 });
    expect(first.isActive).to.equal(true);
    // After unsubscribe() the conversation can be followed again.
    await first.unsubscribe();
    const second = client.subscribe(conversationId, () => undefined);
    await second.whenReady();
    await waitFor(() => second.isActive, { what: 'the second subscription' });
  });

  it('lets a dozen subscriptions wait for the connection without a MaxListenersExceededWarning', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    const { alice } = await directPair(server, pool);
    const client = pool.open(server.url, { token: alice.token });
    const ended: string[] = [];
    try {
      // Conversations alice is not in: each subscription waits for the connection, then ends with NOT_FOUND.
      for (let i = 0; i < 12; i++)
        client.subscribe(randomUUID(), () => undefined, { onError: (err) => ended.push(err.code) });
      await client.connect();
      await waitFor(() => ended.length === 12, { what: 'twelve subscriptions to end' });
    } finally {
      process.off('warning', onWarning);
    }
    expect(ended).to.deep.equal(Array.from({ length: 12 }, () => 'NOT_FOUND'));
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).to.deep.equal([]);
  });
});
