import type { ServerToClientEvents } from '../../lib/protocol/index.js';
import type { ClientSocket } from './sockets.js';

type EventName = keyof ServerToClientEvents;
type Payload<E extends EventName> = Parameters<ServerToClientEvents[E]>[0];

/** Records every `event` the socket receives from now on, in arrival order; wait on it with waitFor. */
export function collectEvents<E extends EventName>(socket: ClientSocket, event: E): Array<Payload<E>> {
  const received: Array<Payload<E>> = [];
  // socket.io-client's typed `on` cannot relate a generic event name to its listener; the payload type is exact.
  (socket.on as (name: string, listener: (payload: Payload<E>) => void) => void)(event, (payload) => {
    received.push(payload);
  });
  return received;
}

/** Resolves with the disconnect reason once the socket is disconnected (at once if it already is). */
export function disconnected(socket: ClientSocket): Promise<string> {
  if (socket.disconnected) return Promise.resolve('already disconnected');
  return new Promise((resolve) => socket.once('disconnect', (reason) => resolve(reason)));
}
