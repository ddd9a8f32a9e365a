import { Decoder, Encoder } from 'socket.io-parser';

/** The bytes of one engine.io packet as Socket.IO's decoder is handed it: text, a binary buffer, or base64. */
function sizeOf(data: unknown): number {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data.byteLength;
  if (typeof data === 'object' && data !== null && 'data' in data && typeof data.data === 'string') {
    return data.data.length;
  }
  return 0;
}

/**
 * Socket.IO's parser with a cap on a whole message. Engine.io's `maxHttpBufferSize` caps each of its packets, and a
 * Socket.IO message with binary attachments is one text packet and one packet per attachment (up to 10): without
 * this, a message of ten times the cap was put together and handled. Past `maxBytes` the decoder throws, which
 * Socket.IO answers by closing the connection (as it closes one whose single packet is over the cap). No client
 * event of the contract carries binary; a small attachment still reaches its handler and is refused there.
 */
export function boundedParser(maxBytes: number): { Encoder: typeof Encoder; Decoder: typeof Decoder } {
  class BoundedDecoder extends Decoder {
    /** The bytes of the message being put together: its text packet and the attachments so far. */
    private messageBytes = 0;

    override add(data: unknown): void {
      // A text packet starts a message (the decoder refuses one while attachments are awaited).
      if (typeof data === 'string') this.messageBytes = 0;
      this.messageBytes += sizeOf(data);
      if (this.messageBytes > maxBytes) throw new Error('message over SOCKET_MAX_BYTES');
      super.add(data);
    }
  }
  return { Encoder, Decoder: BoundedDecoder };
}
