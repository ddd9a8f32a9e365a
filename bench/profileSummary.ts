/**
 * Sums self time per function in a V8 .cpuprofile (what `node --cpu-prof` writes). Usable on its own:
 *   npx tsx bench/profileSummary.ts PROFILE.cpuprofile [TOP]
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProfileEntry } from './report.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled time, idle excluded, ms. */
  busyMs: number;
  idleMs: number;
  top: ProfileEntry[];
  /** Self time per npm package, node: module or project folder; native frames count for their JS caller. */
  byPackage: Array<{ name: string; selfMs: number; percent: number }>;
}

/** The package (or node: module, or project folder) a frame's script belongs to; '' for native frames. */
function packageOf(url: string): string {
  if (url === '') return '';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  if (url.startsWith('node:')) return url;
  const file = url.replace(/^file:\/\//, '');
  return file.startsWith(process.cwd()) ? (path.relative(process.cwd(), file).split('/')[0] ?? file) : file;
}

/** Shortens a file URL to its path inside the project or node_modules, which is what a reader needs. */
function location(frame: CallFrame): string {
  if (frame.url === '') return '';
  let file = frame.url.replace(/^file:\/\//, '');
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) file = file.slice(nm + 'node_modules/'.length);
  else if (file.startsWith(process.cwd())) file = path.relative(process.cwd(), file);
  // lineNumber is 0-based in the profile.
  return `${file}:${frame.lineNumber + 1}`;
}

/** Self time per function (samples x interval), largest first; percentages are of busy (non-idle) time. */
export function summarizeProfile(profile: CpuProfile, top = 20): ProfileSummary {
  const byNode = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<string, { frame: CallFrame; us: number }>();
  let idleUs = 0;
  let busyUs = 0;
  profile.samples.forEach((id, i) => {
    // The delta after a sample is the time it stood for; the last sample gets the previous one's.
    const us = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    const frame = byNode.get(id)?.callFrame;
    if (!frame) return;
    if (frame.functionName === '(idle)') {
      idleUs += us;
      return;
    }
    busyUs += us;
    const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}`;
    const entry = selfUs.get(key) ?? { frame, us: 0 };
    entry.us += us;
    selfUs.set(key, entry);
  });
  const entries = [...selfUs.values()].sort((a, b) => b.us - a.us).slice(0, top);

  // Native frames (writev, GC, ...) are charged to the nearest JavaScript caller's package.
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const packageUs = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    let node = byNode.get(id);
    if (!node || node.callFrame.functionName === '(idle)') return;
    let name = packageOf(node.callFrame.url);
    while (name === '' && parentOf.has(node.id)) {
      node = byNode.get(parentOf.get(node.id)!)!;
      name = packageOf(node.callFrame.url);
    }
    const key = name || '(native, no JS caller)';
    packageUs.set(key, (packageUs.get(key) ?? 0) + us);
  });
  const byPackage = [...packageUs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({
      name,
      selfMs: Math.round(us / 1000),
      percent: busyUs === 0 ? 0 : Math.round((us / busyUs) * 1000) / 10,
    }));
  return {
    busyMs: Math.round(busyUs / 1000),
    idleMs: Math.round(idleUs / 1000),
    byPackage,
    top: entries.map(({ frame, us }) => ({
      functionName: frame.functionName || '(anonymous)',
      location: location(frame),
      selfMs: Math.round(us / 100) / 10,
      percent: busyUs === 0 ? 0 : Math.round((us / busyUs) * 1000) / 10,
    })),
  };
}

/** Reads and summarizes one .cpuprofile file. */
export async function summarizeProfileFile(file: string, top = 20): Promise<ProfileSummary> {
  return summarizeProfile(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, top);
}

/** A node's profile summarized: its label is the folder name under the run's profile folder. */
export interface NodeProfile {
  label: string;
  /** Relative to the working directory. */
  file: string;
  busyMs: number;
  idleMs: number;
  top: ProfileEntry[];
  byPackage: ProfileSummary['byPackage'];
}

/**
 * The largest profile in `dir`, a node's folder: its main thread's (a node also profiles helper threads, such as
 * the module loader's).
 */
async function largestProfile(dir: string): Promise<string | undefined> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(dir, f));
  const sizes = await Promise.all(files.map(async (f) => ({ f, size: (await stat(f)).size })));
  return sizes.sort((a, b) => b.size - a.size)[0]?.f;
}

/** A summary of each node's profile under `profileDir` (a folder per node label), `main` first. */
export async function summarizeProfiles(profileDir: string): Promise<NodeProfile[]> {
  const labels = (await readdir(profileDir, { withFileTypes: true }))
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
  const profiles: NodeProfile[] = [];
  for (const label of labels) {
    const file = await largestProfile(path.join(profileDir, label));
    // A node that never stopped cleanly (killed after the 15 s grace) wrote nothing.
    if (!file) continue;
    const summary = await summarizeProfileFile(file, 20);
    profiles.push({
      label,
      file: path.relative(process.cwd(), file),
      busyMs: summary.busyMs,
      idleMs: summary.idleMs,
      top: summary.top,
      byPackage: summary.byPackage,
    });
  }
  return profiles.sort((a, b) =>
    a.label === 'main' ? -1 : b.label === 'main' ? 1 : a.label.localeCompare(b.label),
  );
}

const invokedDirectly =
  process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]);
if (invokedDirectly) {
  const [file, top] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: npx tsx bench/profileSummary.ts PROFILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  const count = Number(top ?? 20);
  const summary = await summarizeProfileFile(file, Number.isInteger(count) && count > 0 ? count : 20);
  process.stdout.write(
    `busy ${summary.busyMs} ms, idle ${summary.idleMs} ms\n\n| function | location | self ms | % of busy |\n|---|---|---|---|\n`,
  );
  for (const e of summary.top)
    process.stdout.write(`| ${e.functionName} | ${e.location} | ${e.selfMs} | ${e.percent} |\n`);
  process.stdout.write('\n| package | self ms | % of busy |\n|---|---|---|\n');
  for (const p of summary.byPackage) process.stdout.write(`| ${p.name} | ${p.selfMs} | ${p.percent} |\n`);
}
