import type { ConversationActor, Outcome } from '../../actors/ConversationActor.js';
import type { PublicMessage } from '../protocol/index.js';

export type { Outcome };

/** One message a participant asked to send; validated, and the sender's membership checked once. */
export interface SendCommand {
  kind: 'send';
  senderId: string;
  clientMsgId: string;
  body: string;
}

/** What a conversation's actor queues and the writer commits. */
export type MessageCommand = SendCommand;

/** A send once committed: the message, and whether it had been stored before under the same clientMsgId. */
export interface Stored {
  message: PublicMessage;
  duplicate: boolean;
}

/** The ready commands of one conversation, in the order they were accepted. */
export interface ConversationBatch {
  conversationId: string;
  commands: readonly MessageCommand[];
}

export type MessageActor = ConversationActor<MessageCommand, Stored>;
