export { BaseModel } from './BaseModel.js';
export { User, toPublicUser } from './User.js';
export { Participant } from './Participant.js';
export { Conversation } from './Conversation.js';
export { Message } from './Message.js';
export { FriendRequest } from './FriendRequest.js';
export { Friendship } from './Friendship.js';
export { Block } from './Block.js';
