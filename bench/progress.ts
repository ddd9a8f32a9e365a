/** A one-line progress bar on stderr; plain lines every quarter when stderr is not a terminal. */
export interface Progress {
  /** Starts a new bar for one phase. */
  begin(label: string): void;
  update(done: number, elapsedMs: number, totalMs: number): void;
  /** Ends the current bar with a final note. */
  end(note: string): void;
  /** A line of its own (phase starts, warnings). */
  note(line: string): void;
}

const WIDTH = 30;

/** Builds the bar over `stream` (stderr by default): stdout stays clean for the Markdown report. */
export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  let label = '';
  let lastQuarter = -1;
  const tty = stream.isTTY;
  const clear = () => {
    if (tty) stream.write('\r\x1b[K');
  };
  return {
    begin(next) {
      label = next;
      lastQuarter = -1;
      if (tty) stream.write(`${label} ...`);
    },
    update(done, elapsedMs, totalMs) {
      const fraction = Math.min(1, totalMs > 0 ? elapsedMs / totalMs : 1);
      const line = `${label} [${'#'.repeat(Math.round(fraction * WIDTH)).padEnd(WIDTH, '.')}] ${Math.round(
        fraction * 100,
      )
        .toString()
        .padStart(3)}% ${(elapsedMs / 1000).toFixed(1)}s ${done} done`;
      if (tty) {
        clear();
        stream.write(line);
        return;
      }
      const quarter = Math.floor(fraction * 4);
      if (quarter > lastQuarter) {
        lastQuarter = quarter;
        stream.write(`${line}\n`);
      }
    },
    end(note) {
      clear();
      stream.write(`${label}: ${note}\n`);
    },
    note(line) {
      clear();
      stream.write(`${line}\n`);
    },
  };
}
