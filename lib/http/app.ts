import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { AppError } from '../errors.js';
import { lacksHost } from '../requestHost.js';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { pinoHttp, stdSerializers } from 'pino-http';
import { safeLogValue, serializeError } from '../logSafety.js';
import { requestIdOf } from './requestId.js';
import type { Services } from '../services.js';
import { corsMiddleware } from './cors.js';
import { createErrorMiddleware, notFoundHandler } from './errorMiddleware.js';
import { httpMetrics, metricsRoutes } from './metrics.js';
import { authRoutes } from './routes/auth.js';
import { blockRoutes } from './routes/blocks.js';
import { conversationRoutes } from './routes/conversations.js';
import { friendRoutes } from './routes/friends.js';
import { healthRoutes } from './routes/health.js';
import { createLookupBudget, userRoutes } from './routes/users.js';
import { webRoutes } from './webStatic.js';

/** Body limit of the contract: larger bodies get 413 PAYLOAD_TOO_LARGE. */
const BODY_LIMIT_BYTES = 64 * 1024;

/** Whether a request announces a body over the limit (`Content-Length`; a chunked one is counted as it is read). */
const announcedTooLarge = (req: IncomingMessage): boolean =>
  Number(req.headers['content-length']) > BODY_LIMIT_BYTES;

/**
 * `Expect: 100-continue`: the client sends its body only once told `100 Continue`, which Node says to every such
 * request unless told otherwise. A body announced over the limit is answered `413` instead (by the app, which
 * refuses it before reading), so the client never sends it; any other gets its `100 Continue`. Any other
 * expectation is ignored.
 */
export function continueWithinBodyLimit(server: HttpServer): void {
  server.on('checkContinue', (req, res) => {
    if (!announcedTooLarge(req)) res.writeContinue();
    server.emit('request', req, res);
  });
  // Any other expectation (none but 100-continue is defined) is ignored and the request served like any other, as
  // RFC 9110 10.1.1 allows: Node's default, a bare 417 before the app runs, had no error envelope and no
  // X-Request-Id, and a 417 of the app's own would need an error code for an expectation no client relies on.
  server.on('checkExpectation', (req, res) => server.emit('request', req, res));
}

/** The charsets JSON is written in (RFC 8259 names UTF-8; UTF-16 and UTF-32 are decoded as declared). */
const JSON_CHARSET = /^utf-(?:8|16|16le|16be|32|32le|32be)$/i;

/**
 * A body in a charset JSON is not written in is refused (415, errorMiddleware), though the parser would decode
 * any `utf-*` one: UTF-7 turns `+AEA-` into `@` and `+ACI-` into a quote, characters a check of the raw bytes
 * never saw. A body that is not well-formed in its charset cannot be decoded: the parser would put U+FFFD for a
 * bad UTF-8 byte or a UTF-32 unit that is no code point, drop the odd last byte of UTF-16, and the message, name
 * or password would be stored changed. Refused instead (400).
 */
function refuseIllFormedBody(_req: unknown, _res: unknown, body: Buffer, encoding: string): void {
  if (!JSON_CHARSET.test(encoding)) {
    throw Object.assign(new Error(`unsupported charset "${encoding.toUpperCase()}"`), {
      status: 415,
      type: 'charset.unsupported',
      charset: encoding,
    });
  }
  const charset = encoding.toLowerCase();
  const wellFormed = charset.startsWith('utf-8')
    ? isUtf8(body)
    : charset.startsWith('utf-16')
      ? body.length % 2 === 0
      : wellFormedUtf32(body, charset);
  if (!wellFormed) {
    throw Object.assign(new Error(`the request body is not valid ${charset.toUpperCase()}`), {
      status: 400,
      type: 'encoding.invalid',
      charset: charset.toUpperCase(),
    });
  }
}

/**
 * Whether `body` is UTF-32 of whole units that are all code points (no surrogates, none above U+10FFFF), in the
 * byte order `charset` names, else its byte order mark's; with neither, the parser guesses the order from the
 * bytes, and the body must be well-formed in one of the two (a JSON text is in only one). The parser's guess can
 * be wrong (its first units mostly characters whose low bytes are zero, as CJK ideographs beyond the BMP): then the
 * body does not parse and is refused 400, never stored changed. A client names the order, or sends the mark.
 */
function wellFormedUtf32(body: Buffer, charset: string): boolean {
  if (body.length % 4 !== 0) return false;
  const inOrder = (littleEndian: boolean): boolean => {
    for (let at = 0; at < body.length; at += 4) {
      const unit = littleEndian ? body.readUInt32LE(at) : body.readUInt32BE(at);
      if (unit > 0x10ffff || (unit >= 0xd800 && unit <= 0xdfff)) return false;
    }
    return true;
  };
  if (charset === 'utf-32le') return inOrder(true);
  if (charset === 'utf-32be') return inOrder(false);
  if (body.length >= 4 && body.readUInt32LE(0) === 0xfeff) return inOrder(true);
  if (body.length >= 4 && body.readUInt32BE(0) === 0xfeff) return inOrder(false);
  return inOrder(true) || inOrder(false);
}

/**
 * `charset=utf8`, a label of UTF-8 (the WHATWG Encoding Standard's, Node's), spelt `utf-8` for the parser, which
 * takes only charsets that begin `utf-` and refused this one 415.
 */
const UTF8_LABEL = /(;\s*charset\s*=\s*"?)utf8("?\s*(?:;|$))/i;

/**
 * The body encodings read, the ones the docs name. The parser also reads `zstd` where Node has it (22.15 and later),
 * so what a node accepted would depend on the Node it runs on: anything else is refused here, on every Node alike.
 */
const BODY_ENCODINGS = new Set(['identity', 'gzip', 'deflate', 'br']);

/** Whether a request carries a body, as the parser decides it (a length or a transfer coding). */
function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] !== undefined;
}

/**
 * helmet's default Content-Security-Policy, narrowed to what the web app uses: styles and fonts only from its own
 * origin (its one stylesheet; no inline styles, no web fonts: the defaults allowed any https: host and
 * 'unsafe-inline'). `upgrade-insecure-requests` goes only with pages served over HTTPS (`req.secure`, which
 * honours `trust proxy`): on a page served over plain HTTP from any host but localhost it would make the browser
 * fetch the page's own scripts over https, and the page would stay blank.
 */
const APP_DIRECTIVES = { styleSrc: ["'self'"], fontSrc: ["'self'"] };
const cspOverHttps = helmet.contentSecurityPolicy({ directives: APP_DIRECTIVES });
const cspOverHttp = helmet.contentSecurityPolicy({
  directives: { ...APP_DIRECTIVES, upgradeInsecureRequests: null },
});

/**
 * Builds the Express app; it holds no state of its own, everything comes from `services` (and whether the node is
 * stopping, for `/readyz`).
 */
export function createApp(services: Services, stopping: () => boolean = () => false): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', services.config.trustProxy);
  app.use(
    pinoHttp({
      logger: services.logger,
      genReqId: requestIdOf,
      // pino-http's request and response objects (reduced to method, url, headers, status) pass the same checks as
      // every logged value: authorization and cookies redacted, long headers cut. Not wrapped by pino-http: its
      // wrapper runs the standard error serializer on an error the line's formatter already made plain, and
      // named every error's type "Object".
      wrapSerializers: false,
      serializers: {
        req: (req: IncomingMessage) => safeLogValue(stdSerializers.req(req)),
        res: (res: ServerResponse) => safeLogValue(stdSerializers.res(res)),
        err: serializeError,
      },
      customLogLevel(_req, res, err) {
        // Answers of load or of an outage are logged by serverErrorLog, once per code every 10 s; readiness probes
        // answer 503 for as long as PostgreSQL is away. Neither is a defect of this request.
        if (res.statusCode === 503) return 'debug';
        if (err || res.statusCode >= 500) return 'error';
        return 'debug';
      },
    }),
  );
  app.use(httpMetrics(services.metrics));
  // Strict-Transport-Security is set on every request the node answers, Express's among them (lib/server.ts).
  app.use(helmet({ contentSecurityPolicy: false, strictTransportSecurity: false }));
  app.use((req, res, next) => (req.secure ? cspOverHttps : cspOverHttp)(req, res, next));
  app.use(corsMiddleware({ origins: services.config.corsOrigins, trustProxy: services.config.trustProxy }));
  // HTTP/1.1 requires Host (lacksHost).
  app.use((req, _res, next) => {
    next(
      lacksHost(req)
        ? new AppError('VALIDATION_FAILED', {
            message: 'The request is not valid HTTP.',
            details: { request: 'missing Host' },
          })
        : undefined,
    );
  });
  // A body announced larger than the limit is refused at once: express.json answers only after reading all of it.
  app.use((req, _res, next) => {
    next(announcedTooLarge(req) ? new AppError('PAYLOAD_TOO_LARGE') : undefined);
  });
  app.use((req, _res, next) => {
    // An empty header names no encoding (the parser reads it as identity, as RFC 9110 ignores empty list items).
    const encoding = (req.headers['content-encoding'] || 'identity').trim().toLowerCase();
    next(hasBody(req) && !BODY_ENCODINGS.has(encoding) ? new AppError('UNSUPPORTED_MEDIA_TYPE') : undefined);
  });
  app.use((req, _res, next) => {
    const type = req.headers['content-type'];
    if (type !== undefined) req.headers['content-type'] = type.replace(UTF8_LABEL, '$1utf-8$2');
    next();
  });
  app.use(express.json({ limit: BODY_LIMIT_BYTES, type: () => true, verify: refuseIllFormedBody }));

  // The API's answers carry tokens and account data: no cache (a browser's, a shared proxy's) may keep them.
  app.use(['/auth', '/users', '/friends', '/blocks', '/conversations'], (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  app.use(healthRoutes(services.db, stopping));
  app.use(authRoutes(services));
  const takeLookup = createLookupBudget(services.config.limits.lookupsPerMinute);
  app.use(userRoutes(services, takeLookup));
  app.use(friendRoutes(services, takeLookup));
  app.use(blockRoutes(services, takeLookup));
  app.use(conversationRoutes(services));
  app.use(metricsRoutes(services.metrics));

  // The browser app (dist/web), after every API route so it never shadows one.
  app.use(webRoutes());

  app.use(notFoundHandler);
  app.use(createErrorMiddleware());
  return app;
}
