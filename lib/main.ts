import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startServer, type RunningServer } from './server.js';
import { StartupError } from './startupErrors.js';

/**
 * Writes the one line an operator needs and exits non-zero; nothing was bound. `command` names what could not run
 * (a CLI command: `xfchat migrate`); without it, the line says the server cannot start.
 */
export function failStartup(err: unknown, command?: string): never {
  let line: string;
  if (err instanceof ConfigError) line = `invalid configuration: ${err.problems.join('; ')}`;
  else if (err instanceof StartupError) line = err.message;
  else line = `unexpected error during startup: ${err instanceof Error ? err.message : String(err)}`;
  process.stderr.write(`${command ?? 'xfchat: cannot start'}: ${oneLine(line)}\n`);
  process.exit(1);
}

/**
 * The line with its control characters and line separators shown as escapes: a setting's value echoed in it (a
 * YAML block that ends in a line break) or a driver's message over several lines stays one line, and cannot make
 * up a second `xfchat:` line.
 */
export function oneLine(text: string): string {
  const escapes: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
  return text.replace(
    /[\p{Cc}\u2028\u2029]/gu,
    (c) => escapes[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * A signal this soon after the first is the same request, not an impatient second one: npm forwards a terminal's
 * Ctrl-C to the server it runs, which also gets it from the terminal (one process group).
 */
const SAME_SIGNAL_MS = 1000;

/** Where SIGTERM/SIGINT go; see {@link listenForSignals}. */
export interface SignalSource {
  /** From now on, signals go to `handler`; one received before this call is handed over at once. */
  handle(handler: (signal: NodeJS.Signals) => void): void;
  /** Aborted by the first signal received before a handler is set (a stop asked for while starting). */
  readonly whileStarting: AbortSignal;
}

/**
 * Listens for SIGTERM and SIGINT (and SIGHUP with `hangup`) from now on, for the life of the process. Call it before
 * starting the server: without it, a signal sent just after the "[STARTUP] listening" line but before
 * {@link handleSignals} runs would kill the process with the default action (no drain, no exit 0). A signal
 * received while starting is held until a handler is set; a second one while starting (more than a second later)
 * exits at once. The listeners are never swapped: Node drops a signal that is pending on a listener being removed.
 */
export function listenForSignals(options: { hangup?: boolean } = {}): SignalSource {
  let handler: ((signal: NodeJS.Signals) => void) | undefined;
  let held: { signal: NodeJS.Signals; at: number } | undefined;
  const starting = new AbortController();
  const dispatch = (signal: NodeJS.Signals) => {
    if (handler) handler(signal);
    else if (!held) {
      held = { signal, at: performance.now() };
      // A startup waiting on something that may take long (another node's migrations) gives up.
      starting.abort(signal);
    } else if (performance.now() - held.at > SAME_SIGNAL_MS) {
      process.stderr.write(`xfchat: a second ${signal} while starting: exiting at once\n`);
      process.exit(1);
    }
  };
  process.on('SIGTERM', dispatch);
  process.on('SIGINT', dispatch);
  // The development server's terminal closed: a stop like any other (by default Node would die at once and leave its
  // PostgreSQL, in a process group of its own, running). Not for `npm start`: a listener would undo `nohup`.
  if (options.hangup === true) process.on('SIGHUP', dispatch);
  return {
    handle(next) {
      handler = next;
      if (held) next(held.signal);
    },
    whileStarting: starting.signal,
  };
}

/** Stops gracefully on the signals `signals` listens for and exits 0; a second signal (more than a second later) exits at once. */
export function handleSignals(
  server: RunningServer,
  onStopped?: () => Promise<void>,
  signals: SignalSource = listenForSignals(),
): void {
  let stoppingSince: number | undefined;
  signals.handle((signal) => {
    if (stoppingSince !== undefined) {
      if (performance.now() - stoppingSince > SAME_SIGNAL_MS) {
        // pino writes stdout synchronously: the line is out before the exit.
        server.services.logger.warn(
          { signal },
          'second signal: exiting at once, without finishing the drain',
        );
        process.exit(1);
      }
      return;
    }
    stoppingSince = performance.now();
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
    server = await startServer(config, {
      logger: createLogger(config.logLevel),
      stop: signals.whileStarting,
    });
  } catch (err) {
    failStartup(err);
  }
  handleSignals(server, undefined, signals);
}

/**
 * Whether this file is the one node was asked to run (not imported by lib/cli.ts or a test): compared as real paths,
 * since a release is often run through a symlink (`/srv/xfchat/current/...`) or from a path with spaces, which
 * neither a typed path nor a file URL spells the same way.
 */
function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    // A script path that cannot be resolved is not this file.
    return false;
  }
}
if (invokedDirectly()) await main();
