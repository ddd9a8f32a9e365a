import { io as connect, type Socket } from 'socket.io-client';
import type { ClientToServerEvents, ServerToClientEvents } from '../../lib/protocol/index.js';

export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** Opens a real socket.io-client over websocket; resolves once connected, rejects with the connect_error. */
export function connectSocket(baseUrl: string, token: string | undefined): Promise<ClientSocket> {
  const socket: ClientSocket = connect(baseUrl, {
    auth: token === undefined ? {} : { token },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      reject(err);
    });
  });
}
