export { BaseModel } from './BaseModel.js';
export { User, toPublicUser, type PublicUser } from './User.js';
export { Participant, type PublicParticipant, type ParticipantRole } from './Participant.js';
export { Conversation, type PublicConversation, type ConversationType } from './Conversation.js';
export { Message, toPublicMessage, type PublicMessage } from './Message.js';
export { FriendRequest, type PublicFriendRequest, type FriendRequestStatus } from './FriendRequest.js';
export { Friendship } from './Friendship.js';
export { Block } from './Block.js';
