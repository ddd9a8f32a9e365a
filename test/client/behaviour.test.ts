import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { XFChatError } from '../../lib/client/index.js';
import { PROJECT_ROOT } from '../helpers/childProcess.js';
import { useNode } from '../helpers/nodes.js';
import { waitFor } from '../helpers/waitFor.js';
import { directPair, storedMessages, useClientPool } from './fixtures.js';

/**
 * Runs `node --import tsx <script> ...args` and resolves with its exit code and output, and how long it took to
 * exit after its first output (which each script writes once it is done: after close(), or with nothing left to
 * do). Starting Node and tsx takes seconds on a loaded machine and is not counted: only `exitWithinMs` after the
 * output is, and the script is killed (a failure) past it.
 */
function runScript(
  script: string,
  args: string[],
  exitWithinMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string; msAfterOutput: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let outputAt: number | undefined;
  return new Promise((resolve, reject) => {
    const kill = (why: string) => {
      child.kill('SIGKILL');
      reject(new Error(`${script} ${why}\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    };
    // Starting: generous, as the test's own timeout is.
    let timer = setTimeout(() => kill('wrote nothing within 40 s'), 40_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (outputAt !== undefined) return;
      outputAt = performance.now();
      clearTimeout(timer);
      timer = setTimeout(() => kill(`did not exit within ${exitWithinMs} ms of its output`), exitWithinMs);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, msAfterOutput: performance.now() - (outputAt ?? performance.now()) });
    });
  });
}

describe('client SDK: lifecycle, send order and misuse', function () {
  // Sends are rate limited as in production. On `slowBudget`, 5 a second after a burst of 10: one send after
  // another (the SDK sends a conversation's one at a time) outpaces that on any machine, so 50 of them meet
  // RATE_LIMITED and retry: the order must survive that. (At 60 a second after a burst of 120, 300 sends met it
  // only when each took under 10 ms on average: not on a loaded machine.)
  const { server, second: slowBudget } = useNode({
    env: { RATE_LIMIT_MESSAGES_PER_SEC: '60' },
    second: { env: { RATE_LIMIT_MESSAGES_PER_SEC: '5' } },
  });
  const pool = useClientPool();

  it('lets a script exit by itself after close(): no socket, timer or connection is left open', async function () {
    this.timeout(60_000);
    const { alice, conversationId } = await directPair(server, pool);
    // An open handle (a reconnection, a ping timer, a keep-alive connection) would keep it alive past the 5 s.
    const result = await runScript(
      'test/client/closeAndExit.ts',
      [server.url, alice.token, conversationId],
      5000,
    );
    expect(result.stderr).to.equal('');
    expect(result.stdout).to.equal('closed after seq 1\n');
    expect(result.code).to.equal(0);
  });

  it('lets a script exit by itself after close() during the renewal of a refused token: no retry is left behind', async function () {
    this.timeout(60_000);
    const username = `script_${randomUUID().slice(0, 8)}`;
    // The script's backoff is a minute: a retry timer left behind would keep it alive past the 5 s.
    const result = await runScript('test/client/closeDuringRenewal.ts', [server.url, username], 5000);
    expect(result.stderr).to.equal('');
    expect(result.stdout).to.equal('connect: CLIENT_CLOSED\n');
    expect(result.code).to.equal(0);
  });

  it('lets a script that logged in but never connected exit without close(): the timed refresh holds nothing open', async function () {
    this.timeout(60_000);
    const username = `script_${randomUUID().slice(0, 8)}`;
    // The next refresh is minutes away (JWT_TTL_SECONDS, 900 by default): a timer holding the process would keep
    // it alive past the 5 s.
    const result = await runScript('test/client/loggedInExit.ts', [server.url, username], 5000);
    expect(result.stderr).to.equal('');
    expect(result.stdout).to.equal(`signed up as ${username}, refresh token kept: true\n`);
    expect(result.code).to.equal(0);
  });

  it('rejects send() before connect() at once with NOT_CONNECTED, and stores nothing', async () => {
    const { alice, conversationId } = await directPair(server, pool);
    const client = pool.open(server.url, { token: alice.token });
    // At once: before any timer runs (a retry waits on one), however long a loaded machine takes to get there.
    let timerRan = false;
    const timer = setTimeout(() => (timerRan = true), 0);
    const error = await client.send(conversationId, 'too early').catch((err: unknown) => err);
    clearTimeout(timer);
    expect(timerRan, 'a timer ran before the rejection').to.equal(false);
    expect(error).to.be.instanceOf(XFChatError).and.include({ code: 'NOT_CONNECTED', status: 0 });
    // Once connected, the same client sends normally.
    await client.connect();
    const message = await client.send(conversationId, 'in time');
    expect((await storedMessages(server, conversationId)).map((m) => m.body)).to.deep.equal(['in time']);
    expect(message.seq).to.equal(1);
  });

  it('stores 50 concurrent sends exactly once and in call order, across RATE_LIMITED retries, with no warning', async function () {
    this.timeout(60_000);
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const { alice, conversationId } = await directPair(slowBudget, pool);
      const client = pool.open(slowBudget.url, { token: alice.token });
      await client.connect();
      const retries: string[] = [];
      const bodies = Array.from({ length: 50 }, (_, i) => `message ${i + 1}`);
      const sent = await Promise.all(
        bodies.map((body) => client.send(conversationId, body, { onRetry: (r) => retries.push(r.reason) })),
      );
      expect(retries).to.include('RATE_LIMITED');
      expect(sent.map((m) => m.seq)).to.deep.equal(bodies.map((_, i) => i + 1));
      const stored = await storedMessages(slowBudget, conversationId);
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
