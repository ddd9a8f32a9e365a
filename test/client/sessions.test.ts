import { expect } from 'chai';
import type { RunningServer } from '../../lib/server.js';
import { randomUUID } from 'node:crypto';
import type { AuthTokens, ConnectionState, PublicMessage, SessionEnded } from '../../lib/client/index.js';
import jwt from 'jsonwebtoken';
import { signAccessToken } from '../../lib/auth/tokens.js';
import { untilAStatementWaitsForALock } from '../helpers/postgres.js';
import { useNode } from '../helpers/nodes.js';
import { startProxy, useProxies } from '../helpers/proxy.js';
import { insertFriendship, uniqueUsername } from '../helpers/users.js';
import { waitFor } from '../helpers/waitFor.js';
import { failure, storedMessages, useClientPool } from './fixtures.js';

const PASSWORD = 'correct horse battery';

/** The URL a `fetch` option is called with. */
function urlOf(input: string | URL | Request): string {
  return typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
}

describe('client SDK: sessions, refresh and their end', function () {
  /**
   * `shortLived`: a node whose access tokens live 6 s, so a few seconds see several refreshes. (Not 2 s: the client
   * refreshes such a token after 500 ms, and a token may have only a second left when it arrives, so the refresh and
   * the socket's `auth:refresh` had under 500 ms to land before the node cut the socket at the old expiry, which a
   * loaded machine overran. At 6 s they have at least 2.5 s.)
   */
  const { server, second: shortLived } = useNode({ second: { env: { JWT_TTL_SECONDS: '6' } } });
  const pool = useClientPool();
  const proxies = useProxies();

  /** A signed-up client, with every `tokens` and `sessionEnded` event it fires. */
  async function signedUp(node: RunningServer = server) {
    const tokens: AuthTokens[] = [];
    const ended: SessionEnded[] = [];
    const client = pool.open(node.url, { onTokens: (t) => tokens.push(t) });
    client.on('sessionEnded', (e) => ended.push(e));
    const username = uniqueUsername('sdks');
    const { user } = await client.signup({ username, password: PASSWORD });
    return { client, user, username, tokens, ended };
  }

  // TYPES hunt: after signup and login the `tokens` event carried the whole answer, the user's profile too, which
  // AuthTokens does not declare (an application storing the object stored the profile); after a refresh it did not.
  it('tells the tokens of a signup, a login and a refresh as AuthTokens: the three fields, nothing more', async () => {
    const alice = await signedUp();
    const seen: AuthTokens[] = [];
    alice.client.on('tokens', (t) => seen.push(t));
    await alice.client.login(alice.username, PASSWORD);
    const later = pool.open(server.url, { onTokens: (t) => alice.tokens.push(t) });
    expect((await later.resume(alice.client.refreshToken!)).id).to.equal(alice.user.id);
    expect(alice.tokens).to.have.length(3);
    expect(seen).to.have.length(1);
    for (const tokens of [...alice.tokens, ...seen])
      expect(Object.keys(tokens).sort()).to.deep.equal(['expiresIn', 'refreshToken', 'token']);
  });

  it('keeps sending across many 6-second tokens: nothing lost, nothing doubled', async function () {
    this.timeout(60_000);
    const alice = await signedUp(shortLived);
    const bob = await signedUp(shortLived);
    await insertFriendship(shortLived.services.db.knex, alice.user.id, bob.user.id);
    const conversation = await alice.client.conversations.createDirect(bob.user.id);
    await Promise.all([alice.client.connect(), bob.client.connect()]);
    const received: PublicMessage[] = [];
    const subscription = bob.client.subscribe(conversation.id, (m) => received.push(m));
    await subscription.whenReady();
    const states: string[] = [];
    for (const c of [alice.client, bob.client]) c.on('state', (state) => states.push(state));

    const sent: string[] = [];
    const start = Date.now();
    // For 8 s, and on until several refreshes happened (every ~2.5 s, later on a loaded machine).
    for (let i = 0; Date.now() - start < 8000 || alice.tokens.length < 5; i++) {
      const body = `message ${i}`;
      await alice.client.send(conversation.id, body);
      sent.push(body);
      // REST in between, with whatever token is current.
      if (i % 25 === 0) expect((await alice.client.me()).id).to.equal(alice.user.id);
    }
    // Several refreshes happened along the way, each handing out a new refresh token.
    expect(alice.tokens.length).to.be.at.least(5);
    expect(new Set(alice.tokens.map((t) => t.refreshToken)).size).to.equal(alice.tokens.length);
    expect(alice.ended).to.deep.equal([]);
    expect(alice.client.refreshToken).to.equal(alice.tokens.at(-1)!.refreshToken);

    const stored = await storedMessages(shortLived, conversation.id);
    expect(stored.map((m) => m.body)).to.deep.equal(sent);
    expect(stored.map((m) => m.seq)).to.deep.equal(sent.map((_, i) => i + 1));
    expect(new Set(stored.map((m) => m.clientMsgId)).size).to.equal(sent.length);
    await waitFor(() => received.length === sent.length, { what: 'bob to receive every message' });
    expect(received.map((m) => m.body)).to.deep.equal(sent);
    expect(bob.ended).to.deep.equal([]);
    // The live sockets took each new token (auth:refresh) instead of being cut at every expiry.
    expect(states, states.join(' ')).to.deep.equal([]);
  });

  it('retries a REST call once after refreshing when the access token is refused', async () => {
    const alice = await signedUp();
    alice.client.token = 'not-a-valid-token';
    expect((await alice.client.me()).id).to.equal(alice.user.id);
    expect(alice.tokens).to.have.length(2);
    expect(alice.client.token).to.equal(alice.tokens[1]!.token);
  });

  it('resumes from a stored refresh token, and tells the app the rotated one', async () => {
    const first = await signedUp();
    const stored = first.client.refreshToken!;
    first.client.close();
    const tokens: AuthTokens[] = [];
    const later = pool.open(server.url, { onTokens: (t) => tokens.push(t) });
    expect((await later.resume(stored)).id).to.equal(first.user.id);
    expect(tokens).to.have.length(1);
    expect(later.refreshToken).to.equal(tokens[0]!.refreshToken).and.not.equal(stored);
    await later.connect();
    // A refresh token works once: resuming from it again is refused (and ends that session: reuse).
    const again = pool.open(server.url);
    const ended: SessionEnded[] = [];
    later.on('sessionEnded', (e) => ended.push(e));
    expect(await failure(again.resume(stored))).to.include({ code: 'UNAUTHORIZED' });
    await waitFor(() => ended.length === 1, { what: 'the reuse to end the resumed session' });
    expect(ended).to.deep.equal([{ reason: 'reused' }]);
    expect(later.token).to.equal(undefined);
  });

  it('waits out an access token of 30 days instead of refreshing in a loop (setTimeout waits 24.9 days at most)', async () => {
    // The server allows tokens of up to 30 days (JWT_TTL_SECONDS); here every pair the client gets says so.
    const thirtyDays: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (!/\/auth\/(signup|refresh)$/.test(urlOf(input)) || !response.ok) return response;
      const auth = (await response.json()) as Record<string, unknown>;
      return new Response(JSON.stringify({ ...auth, expiresIn: 30 * 24 * 3600 }), {
        status: response.status,
      });
    };
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    const tokens: AuthTokens[] = [];
    try {
      const client = pool.open(server.url, { fetch: thirtyDays, onTokens: (t) => tokens.push(t) });
      await client.signup({ username: uniqueUsername('sdkl'), password: PASSWORD });
      // Nothing is due for 30 days: nothing may happen meanwhile (a wait of more than 2^31-1 ms fires after 1 ms).
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      process.off('warning', onWarning);
    }
    expect(tokens, 'the signup only').to.have.length(1);
    expect(warnings).to.not.include('TimeoutOverflowWarning');
  });

  /**
   * A signed-up user's stored refresh token, and a new client to resume it on whose first request to `path` fails
   * as if offline for a moment (the ones after it get through): `calls()` counts the requests to `path`.
   */
  async function resumingWithFirstFailure(path: string) {
    const first = await signedUp();
    const stored = first.client.refreshToken!;
    first.client.close();
    let calls = 0;
    const flaky: typeof fetch = async (input, init) => {
      if (urlOf(input).endsWith(path) && calls++ === 0) throw new TypeError('fetch failed');
      return fetch(input, init);
    };
    const tokens: AuthTokens[] = [];
    const ended: SessionEnded[] = [];
    const client = pool.open(server.url, { fetch: flaky, onTokens: (t) => tokens.push(t) });
    client.on('sessionEnded', (e) => ended.push(e));
    return { first, stored, client, tokens, ended, calls: () => calls };
  }

  it('leaves nothing behind when resume() cannot reach the server, so resuming with the same token works later', async () => {
    const { first, stored, client, tokens, ended, calls } = await resumingWithFirstFailure('/auth/refresh');

    expect(await failure(client.resume(stored))).to.include({ code: 'NETWORK_ERROR' });
    // Longer than the client's retry delays: no retry spends the token behind the app's back.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(calls()).to.equal(1);
    expect(client.refreshToken).to.equal(undefined);
    expect((await client.resume(stored)).id).to.equal(first.user.id);
    expect(tokens).to.have.length(1);
    expect(ended).to.deep.equal([]);
  });

  it('keeps the session of a resume() whose refresh went through but whose GET /auth/me failed, for a retry with the same token', async () => {
    const { first, stored, client, tokens, ended } = await resumingWithFirstFailure('/auth/me');

    expect(await failure(client.resume(stored))).to.include({ code: 'NETWORK_ERROR' });
    // The stored token is spent by now: the client holds (and has told the app) the pair it was traded for.
    expect(tokens).to.have.length(1);
    expect(client.refreshToken).to.equal(tokens[0]!.refreshToken);
    // The retry picks that session up instead of presenting the spent token, which would end it as a reuse.
    expect((await client.resume(stored)).id).to.equal(first.user.id);
    expect(tokens).to.have.length(1);
    expect(ended).to.deep.equal([]);
  });

  it('presents a refresh token once when resume() is called twice with it at once', async () => {
    const first = await signedUp();
    const stored = first.client.refreshToken!;
    first.client.close();
    const tokens: AuthTokens[] = [];
    const ended: SessionEnded[] = [];
    const client = pool.open(server.url, { onTokens: (t) => tokens.push(t) });
    client.on('sessionEnded', (e) => ended.push(e));
    const users = await Promise.all([client.resume(stored), client.resume(stored)]);
    expect(users.map((u) => u.id)).to.deep.equal([first.user.id, first.user.id]);
    expect(tokens).to.have.length(1);
    expect(ended).to.deep.equal([]);
  });

  it('presents the token given to resume() even while a refresh of the previous session is on its way', async () => {
    const other = await signedUp();
    const otherStored = other.client.refreshToken!;
    other.client.close();
    // The test holds the next POST /auth/refresh until it lets it go.
    let hold = false;
    let release: (() => void) | undefined;
    const gated: typeof fetch = async (input, init) => {
      if (urlOf(input).endsWith('/auth/refresh') && hold) {
        hold = false;
        await new Promise<void>((resolve) => (release = resolve));
      }
      return fetch(input, init);
    };
    const ended: SessionEnded[] = [];
    const client = pool.open(server.url, { fetch: gated });
    client.on('sessionEnded', (e) => ended.push(e));
    await client.signup({ username: uniqueUsername('sdkw'), password: PASSWORD });
    // A REST call finds its access token refused: the refresh it starts is held on its way.
    hold = true;
    client.token = 'refused';
    // Its call answers for its own session, which will be gone by then.
    const meFailure = failure(client.me());
    await waitFor(() => release, { what: 'the refresh to be on its way' });

    // Meanwhile the app switches to another stored session.
    const resumed = client.resume(otherStored);
    release!();
    expect((await resumed).id).to.equal(other.user.id);
    expect(await meFailure).to.include({ code: 'UNAUTHORIZED' });
    expect(client.refreshToken).to.be.a('string').and.not.equal(otherStored);
    expect((await client.me()).id).to.equal(other.user.id);
    expect(ended).to.deep.equal([]);
  });

  it('reports sessionEnded with the reason when another device revokes this one or changes the password', async () => {
    const phone = await signedUp();
    const laptop = pool.open(server.url);
    await laptop.login(phone.username, PASSWORD);
    await phone.client.connect();
    await laptop.connect();
    const laptopEnded: SessionEnded[] = [];
    laptop.on('sessionEnded', (e) => laptopEnded.push(e));

    const sessions = await laptop.sessions.list();
    expect(sessions).to.have.length(2);
    const phoneSession = sessions.find((s) => !s.current)!;
    await laptop.sessions.revoke(phoneSession.id);
    await waitFor(() => phone.ended.length === 1, { what: 'the phone to hear it was revoked' });
    expect(phone.ended).to.deep.equal([{ reason: 'revoked' }]);
    expect(phone.client.token).to.equal(undefined);
    expect(phone.client.refreshToken).to.equal(undefined);
    expect(phone.client.state).to.equal('disconnected');

    // Sign the phone in again, then change the password on the laptop: the phone's session ends.
    await phone.client.login(phone.username, PASSWORD);
    await phone.client.connect();
    await laptop.changePassword(PASSWORD, 'a new password');
    await waitFor(() => phone.ended.length === 2, { what: 'the phone to hear of the password change' });
    expect(phone.ended[1]).to.deep.equal({ reason: 'password_changed' });
    expect(laptopEnded).to.deep.equal([]);
    expect((await laptop.me()).id).to.equal(phone.user.id);

    // The laptop's own logout is no news to it.
    await laptop.logout();
    expect(laptopEnded).to.deep.equal([]);
  });

  it('ends the session when a refresh is refused while offline, and the call fails with UNAUTHORIZED', async () => {
    const alice = await signedUp();
    const other = pool.open(server.url);
    await other.login(alice.username, PASSWORD);
    await other.logoutAll();
    alice.client.token = 'stale';
    expect(await failure(alice.client.me())).to.include({ code: 'UNAUTHORIZED', status: 401 });
    expect(alice.ended).to.deep.equal([{ reason: 'expired' }]);
    expect(alice.client.refreshToken).to.equal(undefined);
  });

  it('reports a reused refresh token as reused when the socket says so, and as expired over REST alone', async () => {
    for (const connected of [true, false]) {
      const alice = await signedUp();
      if (connected) await alice.client.connect();
      // Someone else (a thief) refreshes with alice's current refresh token first.
      const stolen = await fetch(`${server.url}/auth/refresh`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refreshToken: alice.client.refreshToken }),
      });
      expect(stolen.status).to.equal(200);
      // Alice's next refresh presents the spent token: a reuse, which ends the session.
      alice.client.token = 'stale';
      expect(await failure(alice.client.me())).to.include({ code: 'UNAUTHORIZED' });
      // The 401 is the same for an unknown, expired or reused token; only the socket hears the reason.
      expect(alice.ended, connected ? 'connected' : 'REST only').to.deep.equal([
        { reason: connected ? 'reused' : 'expired' },
      ]);
      expect(alice.client.refreshToken).to.equal(undefined);
    }
  });

  it('reports a refused resume() as expired, not with the reason an earlier session of the client ended with', async () => {
    const alice = await signedUp();
    await alice.client.connect();
    // Another device revokes this one: the live socket hears "revoked".
    const other = pool.open(server.url);
    await other.login(alice.username, PASSWORD);
    const mine = (await other.sessions.list()).find((s) => !s.current)!;
    await other.sessions.revoke(mine.id);
    await waitFor(() => alice.ended.length === 1, { what: 'the revoked session to end' });
    expect(alice.ended).to.deep.equal([{ reason: 'revoked' }]);
    // Later the app resumes from a stored token the server refuses: without a connection, that is "expired".
    const error = await failure(alice.client.resume('not-a-refresh-token-of-any-session'));
    expect(error).to.include({ code: 'UNAUTHORIZED' });
    expect(alice.ended).to.deep.equal([{ reason: 'revoked' }, { reason: 'expired' }]);
  });

  it('keeps using a still valid access token while a timed refresh fails', async () => {
    let releaseRefresh: (() => void) | undefined;
    let refreshes = 0;
    const gated: typeof fetch = async (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      if (url.endsWith('/auth/refresh')) {
        // Held until the test lets it go, then the server is "unavailable".
        refreshes++;
        await new Promise<void>((resolve) => (releaseRefresh = resolve));
        const body = { error: { code: 'DB_UNAVAILABLE', message: 'The database is unavailable.' } };
        return new Response(JSON.stringify(body), { status: 503 });
      }
      const response = await fetch(input, init);
      if (!url.endsWith('/auth/signup')) return response;
      // The token lasts 15 minutes; the client is told 4 s, so its timed refresh comes after 1.5 s.
      const auth = (await response.json()) as Record<string, unknown>;
      return new Response(JSON.stringify({ ...auth, expiresIn: 4 }), { status: response.status });
    };
    const client = pool.open(server.url, { fetch: gated });
    const refreshErrors: string[] = [];
    client.on('refreshError', (error) => refreshErrors.push(error.code));
    const { user } = await client.signup({ username: uniqueUsername('sdkf'), password: PASSWORD });
    await waitFor(() => refreshes === 1, { what: 'the timed refresh' });
    const me = client.me();
    const friends = client.friends.list();
    releaseRefresh!();
    expect((await me).id).to.equal(user.id);
    expect(await friends).to.deep.equal([]);
    await waitFor(() => refreshErrors.length === 1, { what: 'the refresh error' });
    expect(refreshErrors).to.deep.equal(['DB_UNAVAILABLE']);
  });

  it('reconnects the socket with a fresh token after its old one was refused', async () => {
    const proxy = await startProxy(server.url);
    try {
      const tokens: AuthTokens[] = [];
      const ended: SessionEnded[] = [];
      const client = pool.open(proxy.url, { onTokens: (t) => tokens.push(t) });
      client.on('sessionEnded', (e) => ended.push(e));
      await client.signup({ username: uniqueUsername('sdkr'), password: PASSWORD });
      await client.connect();
      // The connection drops and the access token is no good by the time it comes back (as after a laptop
      // slept): the handshake refuses it, the client refreshes and reconnects.
      client.token = 'expired-meanwhile';
      proxy.cut();
      await waitFor(() => client.state === 'connected' && tokens.length === 2, {
        what: 'the reconnection with a refreshed token',
      });
      expect(ended).to.deep.equal([]);
    } finally {
      await proxy.close();
    }
  });

  it('renews a refused token again when the reconnection after the last renewal failed for a network reason', async () => {
    const proxy = await proxies.start(server.url);
    // The socket goes through the proxy, REST straight to the node; a hook may run before a refresh goes out.
    let beforeRefresh: (() => Promise<void>) | undefined;
    const direct: typeof fetch = async (input, init) => {
      const url = urlOf(input);
      const hook = url.endsWith('/auth/refresh') ? beforeRefresh : undefined;
      beforeRefresh = undefined;
      await hook?.();
      return fetch(url.replace(proxy.url, server.url), init);
    };
    const tokens: AuthTokens[] = [];
    const ended: SessionEnded[] = [];
    const unauthorized: string[] = [];
    const client = pool.open(proxy.url, { fetch: direct, onTokens: (t) => tokens.push(t) });
    client.on('sessionEnded', (e) => ended.push(e));
    client.on('unauthorized', (e) => unauthorized.push(e.message));
    await client.signup({ username: uniqueUsername('sdkn'), password: PASSWORD });
    await client.connect();

    // A laptop wakes up: its access token expired meanwhile, so the handshake refuses it and the client renews it.
    // Just then the network goes again: the reconnection with the renewed token fails on the way.
    client.token = 'expired-meanwhile';
    beforeRefresh = () => proxy.stop();
    proxy.cut();
    await waitFor(() => tokens.length === 2, { what: 'the renewal' });
    await new Promise((resolve) => setTimeout(resolve, 300)); // reconnection attempts into the void
    expect(client.state).to.equal('reconnecting');

    // The outage outlasts the renewed token too. When the network is back, its refusal is renewed as well.
    client.token = 'expired-meanwhile';
    await proxy.start();
    await waitFor(() => client.state === 'connected' || client.state === 'disconnected', {
      what: 'the reconnection to connect or give up',
    });
    expect(unauthorized).to.deep.equal([]);
    expect(client.state).to.equal('connected');
    expect(tokens).to.have.length(3);
    expect(ended).to.deep.equal([]);
  });

  it('gives the socket a token refreshed while its handshake ran, so it is not cut at the old token’s expiry', async function () {
    this.timeout(30_000);
    const { client, user, tokens } = await signedUp();
    const { knex } = server.services.db;
    const { sid } = jwt.decode(client.token!) as { sid: string };
    // The token the handshake presents: of this session, expiring in 4 s.
    const oldExpiry = Date.now() + 4000;
    client.token = signAccessToken(
      { userId: user.id, sessionId: sid },
      { ...server.services.config.auth, tokenTtlSeconds: 4 },
      Date.now(),
    ).token;
    const states: string[] = [];
    client.on('state', (state) => states.push(state));

    // The handshake's token check (which reads users) is held while a refresh (which does not) goes through.
    const hold = await knex.transaction();
    let connecting: Promise<void> | undefined;
    let answered: Promise<unknown> | undefined;
    try {
      await hold.raw('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
      connecting = client.connect();
      await untilAStatementWaitsForALock(knex, 'the handshake to wait');
      // A refresh now, as a timed one: a refused access token makes the next call refresh (the call itself, which
      // reads users, answers once the hold is over).
      client.token = 'refused';
      answered = client.me();
      await waitFor(() => tokens.length === 2, { what: 'the refresh' });
    } finally {
      await hold.commit();
    }
    await Promise.all([connecting, answered]);
    await waitFor(() => Date.now() > oldExpiry + 2500, { what: 'the old expiry to pass', timeoutMs: 10_000 });
    expect(states).to.deep.equal(['connecting', 'connected']);
  });

  it('profile and deletion helpers', async () => {
    const alice = await signedUp();
    expect((await alice.client.updateProfile({ displayName: 'Alice B.' })).displayName).to.equal('Alice B.');
    expect(await failure(alice.client.deleteAccount('wrong password'))).to.include({
      code: 'INVALID_CREDENTIALS',
    });
    await alice.client.deleteAccount(PASSWORD);
    expect(alice.client.token).to.equal(undefined);
    expect(alice.ended).to.deep.equal([]);
    const bob = await signedUp();
    expect(await bob.client.users.get(alice.user.id)).to.deep.include({
      username: null,
      displayName: 'Deleted user',
    });
  });
});

describe('client SDK: a new access token the live socket refuses for now', function () {
  // 6-second access tokens (a refresh every 2.5 s or so), 5 socket events a second (bursts of 10).
  const { server } = useNode({ env: { JWT_TTL_SECONDS: '6', SOCKET_EVENTS_PER_SEC: '5' } });
  const pool = useClientPool();

  it('is given to the socket again after Retry-After: a socket busy as each refresh lands is not cut at the older token’s expiry', async function () {
    this.timeout(30_000);
    let refused = 0;
    // The app is busy on its socket as each refresh lands (a dozen events at once), so the socket's event budget
    // refuses the new token's `auth:refresh` (RATE_LIMITED).
    const busyFetch: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      // (Called once `client` below exists: by its signup and refreshes.)
      if (urlOf(input).endsWith('/auth/refresh') && client.state === 'connected')
        for (let i = 0; i < 12; i++)
          client.typing(randomUUID()).catch((err: unknown) => {
            if ((err as { code?: string }).code === 'RATE_LIMITED') refused += 1;
          });
      return response;
    };
    const client = pool.open(server.url, { fetch: busyFetch });
    await client.signup({ username: uniqueUsername('busy'), password: PASSWORD });
    const states: ConnectionState[] = [];
    client.on('state', (state) => states.push(state));
    await client.connect();
    // Past the expiry of the token the handshake sent (6 s), with a margin.
    await new Promise((resolve) => setTimeout(resolve, 7500));
    expect(refused, 'the bursts met the budget').to.be.above(0);
    expect(states).to.deep.equal(['connecting', 'connected']);
  });
});
