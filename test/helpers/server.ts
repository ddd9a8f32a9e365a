import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../../lib/config.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import { startServer, type RunningServer, type StartOptions } from '../../lib/server.js';

/** One JWT secret per test run, shared by every node so tokens work across nodes as in production. */
export const TEST_JWT_SECRET = randomBytes(32).toString('hex');

/** The environment a test node starts with: port 0, loopback, silent logs, limits off unless a test sets them. */
export function testEnv(databaseUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    JWT_SECRET: TEST_JWT_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    RATE_LIMIT_AUTH_PER_MIN: '0',
    RATE_LIMIT_MESSAGES_PER_SEC: '0',
    MAX_CONNECTIONS_PER_IP: '0',
    MAX_SOCKETS_PER_USER: '0',
    RATE_LIMIT_READS_PER_SEC: '0',
    RATE_LIMIT_LOOKUPS_PER_MIN: '0',
    SOCKET_EVENTS_PER_SEC: '0',
    RATE_LIMIT_CONVERSATIONS_PER_MIN: '0',
    ...overrides,
  };
}

export function testConfig(databaseUrl: string, overrides: Record<string, string> = {}): Readonly<Config> {
  return loadConfig(testEnv(databaseUrl, overrides));
}

/**
 * A real server node (HTTP + Socket.IO) on a free port, logging to `logger` (a new one at the configured level
 * by default). Close it in an after hook, or use the fixtures of test/helpers/nodes.ts.
 */
export async function startTestServer(
  databaseUrl: string,
  overrides: Record<string, string> = {},
  logger?: Logger,
  options: Omit<StartOptions, 'logger'> = {},
): Promise<RunningServer> {
  const config = testConfig(databaseUrl, overrides);
  return startServer(config, { ...options, logger: logger ?? createLogger(config.logLevel) });
}
