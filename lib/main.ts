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

/**
 * Holds SIGTERM/SIGINT that arrive while the server is starting. Without it, a signal sent just after the
 * "[STARTUP] listening" line but before {@link handleSignals} runs would kill the process with the default
 * action (no drain, no exit 0). A second signal while starting exits at once. Call the returned function to
 * stop holding; it gives the signal received meanwhile, if any, for handleSignals to act on.
 */
export function holdSignalsWhileStarting(): () => NodeJS.Signals | undefined {
  let received: NodeJS.Signals | undefined;
  const hold = (signal: NodeJS.Signals) => {
    if (received) process.exit(1);
    received = signal;
  };
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
  return () => {
    process.off('SIGTERM', hold);
    process.off('SIGINT', hold);
    return received;
  };
}

/**
 * Stops gracefully on SIGTERM/SIGINT and exits 0; a second signal exits at once. `pending` is a signal that
 * arrived during startup (see {@link holdSignalsWhileStarting}): the stop begins at once.
 */
export function handleSignals(
  server: RunningServer,
  onStopped?: () => Promise<void>,
  pending?: NodeJS.Signals,
): void {
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
  if (pending) stop(pending);
}

/** `npm start`: one production node. */
export async function main(): Promise<void> {
  const releaseSignals = holdSignalsWhileStarting();
  let server: RunningServer;
  try {
    const config = loadConfig();
    server = await startServer(config, { logger: createLogger(config.logLevel) });
  } catch (err) {
    failStartup(err);
  }
  handleSignals(server, undefined, releaseSignals());
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (invokedDirectly) await main();
