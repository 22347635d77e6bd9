/**
 * A small reader for V8 `.cpuprofile` files (what `node --cpu-prof` writes): sums the self time
 * of each function over one or more profiles.
 *
 * Format (the parts used here): `{ nodes: [{ id, callFrame: { functionName, url, lineNumber },
 * children? }], samples: [nodeId, ...], timeDeltas: [µs, ...] }`. `timeDeltas[i]` is the time
 * between sample i-1 and sample i, so sample i is charged `timeDeltas[i + 1]` (the time until the
 * next sample); the last sample, whose end is unknown, is charged nothing.
 */
import { readFileSync } from "node:fs";

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time of one function (summed over every node with the same name, file and line). */
export interface SelfTimeRow {
  functionName: string;
  /** File URL shortened to be relative to `urlPrefix`, with the 1-based line. */
  location: string;
  selfMs: number;
  /** Share of all non-idle sampled time, in percent. */
  selfPercent: number;
}

export interface SelfTimeSummary {
  rows: SelfTimeRow[];
  /** Sampled time outside "(idle)". */
  busyMs: number;
  idleMs: number;
}

/**
 * Reads the profiles at `paths` and returns the `limit` functions with the most self time.
 * Throws if a file is not valid JSON or lacks `nodes`.
 */
export function summarizeCpuProfiles(paths: readonly string[], limit: number, urlPrefix = ""): SelfTimeSummary {
  const selfUs = new Map<string, { functionName: string; location: string; us: number }>();
  let idleUs = 0;
  let busyUs = 0;
  for (const file of paths) {
    const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
    if (!Array.isArray(profile.nodes)) throw new Error(`${file}: not a .cpuprofile (no nodes)`);
    const byId = new Map<number, CpuProfileNode>(profile.nodes.map((n) => [n.id, n]));
    const samples = profile.samples ?? [];
    const deltas = profile.timeDeltas ?? [];
    for (let i = 0; i + 1 < samples.length && i + 1 < deltas.length; i++) {
      const node = byId.get(samples[i]!);
      if (node === undefined) continue;
      const us = Math.max(0, deltas[i + 1]!);
      const frame = node.callFrame;
      if (frame.functionName === "(idle)") {
        idleUs += us;
        continue;
      }
      busyUs += us;
      const url = urlPrefix !== "" && frame.url.startsWith(urlPrefix) ? frame.url.slice(urlPrefix.length) : frame.url;
      const location = url === "" ? "" : `${url}:${frame.lineNumber + 1}`;
      const functionName = frame.functionName === "" ? "(anonymous)" : frame.functionName;
      const key = `${functionName}\u0000${location}`;
      const entry = selfUs.get(key) ?? { functionName, location, us: 0 };
      entry.us += us;
      selfUs.set(key, entry);
    }
  }
  const rows = [...selfUs.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, limit)
    .map((e) => ({
      functionName: e.functionName,
      location: e.location,
      selfMs: e.us / 1_000,
      selfPercent: busyUs === 0 ? 0 : (100 * e.us) / busyUs,
    }));
  return { rows, busyMs: busyUs / 1_000, idleMs: idleUs / 1_000 };
}

/** Renders a summary as fixed-width text lines. */
export function formatSelfTimeSummary(summary: SelfTimeSummary): string {
  const lines = [
    `busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms; top self time:`,
    `${"self ms".padStart(10)} ${"%".padStart(6)}  function  (location)`,
  ];
  for (const row of summary.rows) {
    lines.push(
      `${row.selfMs.toFixed(1).padStart(10)} ${row.selfPercent.toFixed(1).padStart(6)}  ${row.functionName}` +
        (row.location === "" ? "" : `  (${row.location})`),
    );
  }
  return lines.join("\n");
}
