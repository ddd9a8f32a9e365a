/**
 * `Strict-Transport-Security` on every answer of the node (docs/operations.md, "TLS for clients"): once a browser
 * has reached the host over HTTPS it uses only HTTPS there, and on its subdomains, for a year. The Socket.IO engine
 * and Node's HTTP parser answer some requests before Express sees them, so the server sets it on every request
 * (lib/server.ts), not helmet on Express's answers alone, and the answers written whole to a socket carry it too
 * (lib/http/malformedRequests.ts). The value is helmet's default.
 */
export const STRICT_TRANSPORT_SECURITY = 'max-age=31536000; includeSubDomains';
