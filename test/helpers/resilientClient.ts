import type { Ack, PublicMessage, SendResult } from '../../lib/protocol/index.js';
import { connectSocket, type ClientSocket } from './sockets.js';
import type { TestUser } from './users.js';
import { waitFor } from './waitFor.js';

/** Codes a well-behaved client retries with the same clientMsgId: the server may come back. */
const RETRIABLE = new Set(['DB_UNAVAILABLE', 'OVERLOADED', 'RATE_LIMITED', 'UNAUTHORIZED']);

export interface SendOutcome {
  clientMsgId: string;
  /** The first successful ack's message. */
  message: PublicMessage;
  /** Acks of every attempt, failures included. */
  attempts: Array<Ack<SendResult> | 'no ack'>;
}

/**
 * A client that behaves as the contract asks: it resends with the same clientMsgId until it gets an ok ack,
 * reconnecting (to wherever `url()` points now) whenever its socket is gone. Tests use it to check "an acked
 * message is stored exactly once" across database restarts and node crashes.
 */
export class ResilientClient {
  private socket: ClientSocket | undefined;
  /** Every ok ack this client ever received, by clientMsgId. */
  readonly acked = new Map<string, PublicMessage>();
  /** Error codes received along the way (for assertions on what clients saw during an outage). */
  readonly errorCodes: string[] = [];

  constructor(
    readonly user: TestUser,
    private readonly url: () => string,
    private readonly ackTimeoutMs = 5000,
  ) {}

  private async connected(): Promise<ClientSocket> {
    if (this.socket?.connected) return this.socket;
    this.socket?.close();
    this.socket = undefined;
    this.socket = await connectSocket(this.url(), this.user.token);
    return this.socket;
  }

  /** One attempt: the ack, or 'no ack' when the socket failed or the ack timed out. */
  async attempt(
    conversationId: string,
    clientMsgId: string,
    body: string,
  ): Promise<Ack<SendResult> | 'no ack'> {
    try {
      const socket = await this.connected();
      // With timeout(), socket.io-client types the ack as any: it is the contract's Ack<SendResult>.
      const ack = (await socket.timeout(this.ackTimeoutMs).emitWithAck('message:send', {
        conversationId,
        clientMsgId,
        body,
      })) as Ack<SendResult>;
      if (ack.ok) this.acked.set(clientMsgId, ack.message);
      else this.errorCodes.push(ack.error.code);
      return ack;
    } catch {
      // Disconnected, refused, or no ack in time: the message may or may not be stored; only a retry tells.
      this.socket?.close();
      this.socket = undefined;
      return 'no ack';
    }
  }

  /** Retries until an ok ack; a non-retriable error code fails at once. */
  async sendUntilAcked(
    conversationId: string,
    clientMsgId: string,
    body: string,
    timeoutMs = 30_000,
  ): Promise<SendOutcome> {
    const attempts: SendOutcome['attempts'] = [];
    const message = await waitFor(
      async () => {
        const ack = await this.attempt(conversationId, clientMsgId, body);
        attempts.push(ack);
        if (ack === 'no ack') return undefined;
        if (ack.ok) return ack.message;
        if (!RETRIABLE.has(ack.error.code)) throw new Error(`not retriable: ${JSON.stringify(ack)}`);
        return undefined;
      },
      { timeoutMs, intervalMs: 100, what: `an ok ack for ${clientMsgId}` },
    );
    return { clientMsgId, message, attempts };
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}
