import type { ConversationActor, Outcome } from '../../actors/ConversationActor.js';
import type { PublicMessage } from '../protocol/index.js';

export type { Outcome };

/**
 * The session a command came in on: the write refuses it (UNAUTHORIZED) when that session has ended, checked under
 * the conversation's lock (migrations/20261203130000_session_checked_under_lock.ts). Absent or null for a write of
 * no session (not checked): every send and change of a client names its session (lib/messaging/service.ts).
 */
interface FromSession {
  sessionId?: string | null;
}

/** One message a participant asked to send; validated, and the sender's membership checked once. */
export interface SendCommand extends FromSession {
  kind: 'send';
  senderId: string;
  clientMsgId: string;
  body: string;
  replyToSeq: number | null;
}

/** A change to a stored message, by `userId`; authorized again under the conversation lock. */
export type ChangeCommand = FromSession &
  (
    | { kind: 'edit'; userId: string; seq: number; body: string }
    | { kind: 'delete'; userId: string; seq: number }
    | { kind: 'react' | 'unreact'; userId: string; seq: number; emoji: string }
  );

/** What a conversation's actor queues and the writer commits, in the order they were accepted. */
export type MessageCommand = SendCommand | ChangeCommand;

/**
 * A command once committed: the message as it now is, and whether nothing new was written (a send stored
 * before under the same clientMsgId, or a change that changed nothing).
 */
export interface Stored {
  message: PublicMessage;
  duplicate: boolean;
  /**
   * On a new or changed message: how many participants the conversation had lost when it was written, as read
   * under its lock (lib/messaging/removals.ts). Never sent to clients.
   */
  removals?: number;
}

/** The ready commands of one conversation: all sends, or all changes (see {@link messageBatchRule}). */
export interface ConversationBatch {
  conversationId: string;
  commands: readonly MessageCommand[];
}

/**
 * The rule of one batch: sends batch with sends and changes with changes, so each batch takes one path of the
 * write function; and a send whose clientMsgId an earlier send of the batch carries joins only with the same body,
 * the same `replyToSeq` and the same session (`isSameSend`).
 * Such a repeat is answered like the first (lib/messaging/statements.ts); any other goes in the next batch, after
 * the first is written, where it is answered alone (a replay, IDEMPOTENCY_CONFLICT, or its session's refusal).
 */
export function messageBatchRule(): (command: MessageCommand) => boolean {
  let sends: boolean | undefined;
  let firsts: Map<string, SendCommand> | undefined;
  return (command) => {
    const send = command.kind === 'send';
    sends ??= send;
    if (send !== sends) return false;
    if (command.kind !== 'send') return true;
    firsts ??= new Map();
    const key = `${command.senderId}|${command.clientMsgId}`;
    const first = firsts.get(key);
    if (first === undefined) {
      firsts.set(key, command);
      return true;
    }
    return isSameSend(first, command);
  };
}

/**
 * Whether a send repeating another's clientMsgId asks for the same message, from the same session: the same body,
 * the same reply and the same session. Only such a repeat is answered like the first within one batch (a first
 * refused for its `replyToSeq` would otherwise refuse a repeat that names a valid one, and the first's session
 * check would answer for another device's session: a live one refused, an ended one answered the message).
 */
export function isSameSend(first: SendCommand, repeat: SendCommand): boolean {
  return (
    first.body === repeat.body &&
    first.replyToSeq === repeat.replyToSeq &&
    (first.sessionId ?? null) === (repeat.sessionId ?? null)
  );
}

export type MessageActor = ConversationActor<MessageCommand, Stored>;
