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

/** Where SIGTERM/SIGINT go; see {@link listenForSignals}. */
export interface SignalSource {
  /** From now on, signals go to `handler`; one received before this call is handed over at once. */
  handle(handler: (signal: NodeJS.Signals) => void): void;
}

/**
 * Listens for SIGTERM/SIGINT from now on, for the life of the process. Call it before starting the server:
 * without it, a signal sent just after the "[STARTUP] listening" line but before {@link handleSignals} runs would
 * kill the process with the default action (no drain, no exit 0). A signal received while starting is held
 * until a handler is set; a second one while starting exits at once. The listeners are never swapped: Node
 * drops a signal that is pending on a listener being removed.
 */
export function listenForSignals(): SignalSource {
  let handler: ((signal: NodeJS.Signals) => void) | undefined;
  let held: NodeJS.Signals | undefined;
  const dispatch = (signal: NodeJS.Signals) => {
    if (handler) handler(signal);
    else if (held) process.exit(1);
    else held = signal;
  };
  process.on('SIGTERM', dispatch);
  process.on('SIGINT', dispatch);
  return {
    handle(next) {
      handler = next;
      if (held) next(held);
    },
  };
}

/** Stops gracefully on SIGTERM/SIGINT and exits 0; a second signal exits at once. */
export function handleSignals(
  server: RunningServer,
  onStopped?: () => Promise<void>,
  signals: SignalSource = listenForSignals(),
): void {
  let stopping = false;
  signals.handle((signal) => {
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
  });
}

/** `npm start`: one production node. */
export async function main(): Promise<void> {
  const signals = listenForSignals();
  let server: RunningServer;
  try {
    const config = loadConfig();
    server = await startServer(config, { logger: createLogger(config.logLevel) });
  } catch (err) {
    failStartup(err);
  }
  handleSignals(server, undefined, signals);
}

const invokedDirectly =
  process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (invokedDirectly) await main();
