import { expect } from 'chai';
import type { RunningServer } from '../../lib/server.js';
import {
  XFChatClient,
  XFChatError,
  type PublicMessage,
  type XFChatClientOptions,
} from '../../lib/client/index.js';
import { insertFriendship, insertUser, type TestUser } from '../helpers/users.js';

/**
 * Tracks every SDK client a test opens so that one afterEach closes them all (a leaked socket would keep
 * mocha from exiting).
 */
export class ClientPool {
  private readonly clients: XFChatClient[] = [];

  /** A client for `baseUrl` with short retry delays, so reconnect tests run in well under a second. */
  open(baseUrl: string, options: XFChatClientOptions = {}): XFChatClient {
    const client = new XFChatClient({ baseUrl, retryBaseMs: 50, retryMaxMs: 300, ...options });
    this.clients.push(client);
    return client;
  }

  closeAll(): void {
    for (const client of this.clients.splice(0)) client.close();
  }
}

/** A ClientPool whose clients are closed after each test. Call it inside `describe`. */
export function useClientPool(): ClientPool {
  const pool = new ClientPool();
  afterEach(() => pool.closeAll());
  return pool;
}

export interface ChatPair {
  alice: TestUser;
  bob: TestUser;
  conversationId: string;
}

/** Two friends (inserted straight into the database) and their direct conversation, created over REST. */
export async function directPair(server: RunningServer, pool: ClientPool): Promise<ChatPair> {
  const { knex } = server.services.db;
  const alice = await insertUser(knex, server.services.config);
  const bob = await insertUser(knex, server.services.config);
  await insertFriendship(knex, alice.id, bob.id);
  const creator = pool.open(server.url, { token: alice.token });
  const conversation = await creator.conversations.createDirect(bob.id);
  return { alice, bob, conversationId: conversation.id };
}

interface MessageRow {
  id: string;
  conversation_id: string;
  seq: string | number;
  client_msg_id: string;
  body: string;
}

/** The rows of a conversation's messages, straight from PostgreSQL, in seq order. */
export async function storedMessages(
  server: RunningServer,
  conversationId: string,
): Promise<Array<{ id: string; seq: number; clientMsgId: string; body: string }>> {
  const rows = await server.services.db
    .knex<MessageRow>('messages')
    .where({ conversation_id: conversationId })
    .orderBy('seq')
    .select('id', 'seq', 'client_msg_id', 'body');
  return rows.map((r) => ({ id: r.id, seq: Number(r.seq), clientMsgId: r.client_msg_id, body: r.body }));
}

/** Collects what a subscription delivers, to compare with the exact expected sequence. */
export function collector(): {
  messages: PublicMessage[];
  seqs: () => number[];
  onMessage: (m: PublicMessage) => void;
} {
  const messages: PublicMessage[] = [];
  return { messages, seqs: () => messages.map((m) => m.seq), onMessage: (m) => messages.push(m) };
}

/** The promise's rejection, which must be an XFChatError. */
export async function failure(promise: Promise<unknown>): Promise<XFChatError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(XFChatError);
    return err as XFChatError;
  }
  throw new Error('expected the call to fail');
}

/** A promise's outcome as it happens, to check how it settled (or wait for it to) without awaiting a hang. */
export function track(promise: Promise<unknown>): { settled: () => boolean; error: () => unknown } {
  let settled = false;
  let error: unknown;
  promise.then(
    () => (settled = true),
    (err: unknown) => {
      settled = true;
      error = err;
    },
  );
  return { settled: () => settled, error: () => error };
}

/** The URL a `fetch` was called with, whatever form it was given in. */
export function urlOf(input: string | URL | Request): string {
  return typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
}

/**
 * A `fetch` whose token refreshes, once `state.hold` is set, get no answer until their request is aborted
 * (`state.held` counts them); every other request goes through.
 */
export function heldRefreshes(): { fetch: typeof fetch; state: { hold: boolean; held: number } } {
  const state = { hold: false, held: 0 };
  const held: typeof fetch = (input, init) => {
    if (state.hold && urlOf(input).endsWith('/auth/refresh')) {
      state.held += 1;
      return new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
    }
    return fetch(input, init);
  };
  return { fetch: held, state };
}
