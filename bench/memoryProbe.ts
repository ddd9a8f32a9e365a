/**
 * Loaded into an XFChat node by the soak scenario (`node --expose-gc --import tsx --import bench/memoryProbe.ts
 * lib/main.ts`), never by the server itself. On SIGUSR2 it collects every unreachable object and writes the
 * node's memory to the file named by XFCHAT_BENCH_MEMORY_FILE (written whole, then renamed into place), so the
 * bench reads the live heap rather than whatever garbage the last collection left behind.
 */
import { renameSync, writeFileSync } from 'node:fs';

/** What the probe writes: `process.memoryUsage()` right after a full collection, and when (Date.now()). */
export interface ProbeReading {
  at: number;
  heapUsed: number;
  heapTotal: number;
  rss: number;
  external: number;
  arrayBuffers: number;
}

const file = process.env.XFCHAT_BENCH_MEMORY_FILE;
const gc = (globalThis as { gc?: () => void }).gc;
if (file !== undefined && file !== '') {
  if (gc === undefined) throw new Error('bench/memoryProbe.ts needs node --expose-gc');
  process.on('SIGUSR2', () => {
    gc();
    const { heapUsed, heapTotal, rss, external, arrayBuffers } = process.memoryUsage();
    const reading: ProbeReading = { at: Date.now(), heapUsed, heapTotal, rss, external, arrayBuffers };
    writeFileSync(`${file}.tmp`, JSON.stringify(reading));
    renameSync(`${file}.tmp`, file);
  });
}
