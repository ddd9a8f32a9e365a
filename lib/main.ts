import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startServer, type RunningServer } from './server.js';
import { StartupError } from './startupErrors.js';

/** Writes the one line an operator needs and exits non-zero; nothing was bound. */
export function failStartup(err: unknown): never {
  let line: string;
  if (err instanceof ConfigError) line = `invalid configuration: ${err.problems.join('; ')}`;
  else if (err instanceof StartupError) line = err.message;
  else line = `unexpected error during startup: ${err instanceof Error ? err.message : String(err)}`;
  process.stderr.write(`xfchat: cannot start: ${line}\n`);
  process.exit(1);
}

/** Stops gracefully on SIGTERM/SIGINT and exits 0; a second signal exits at once. */
export function handleSignals(server: RunningServer, onStopped?: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.exit(1);
    }
    stopping = true;
    server.services.logger.info({ signal }, 'signal received, draining');
    server
      .close()
      .then(() => onStopped?.())
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        server.services.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** `npm start`: one production node. */
export async function main(): Promise<void> {
  let server: RunningServer;
  try {
    const config = loadConfig();
    server = await startServer(config, { logger: createLogger(config.logLevel) });
  } catch (err) {
    failStartup(err);
  }
  handleSignals(server);
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (invokedDirectly) await main();
