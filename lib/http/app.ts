import { randomUUID } from 'node:crypto';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import type { Services } from '../services.js';
import { errorMiddleware, notFoundHandler } from './errorMiddleware.js';
import { healthRoutes } from './routes/health.js';

/** Body limit of the contract: larger bodies get 413 PAYLOAD_TOO_LARGE. */
const BODY_LIMIT = '64kb';
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/** Builds the Express app; it holds no state of its own, everything comes from `services`. */
export function createApp(services: Services): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', services.config.trustProxy);
  app.use(
    pinoHttp({
      logger: services.logger,
      genReqId(req, res) {
        const incoming = req.headers['x-request-id'];
        const id =
          typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming) ? incoming : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      customLogLevel(_req, res, err) {
        if (err || res.statusCode >= 500) return 'error';
        return 'debug';
      },
    }),
  );
  app.use(helmet());
  app.use(express.json({ limit: BODY_LIMIT, type: () => true }));

  app.use(healthRoutes(services.db));

  app.use(notFoundHandler);
  app.use(errorMiddleware);
  return app;
}
