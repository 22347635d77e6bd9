/**
 * WAL append+fsync throughput: `npx tsx test/bench/wal-fsync.ts`.
 *
 * Each run creates a fresh WAL and, for BENCH_SECONDS, appends single 256-byte entries with
 * sync: true from W concurrent writers (each waits for its own fsync before the next append).
 * W = 1 measures the latency of one synced append (an O_DSYNC write, see wal.ts); W = 64 shows
 * group commit (appends share fsyncs).
 * Reports the median of BENCH_RUNS runs. Env: BENCH_SECONDS (default 2), BENCH_RUNS (5),
 * BENCH_WRITERS ("1,64"), BENCH_DIR (default the OS temp dir; put it on the disk you care about),
 * BENCH_PREALLOCATION ("zeros" or "sparse", default zeros), BENCH_ENTRY_BYTES (256).
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Wal, type Preallocation } from "../../server/src/wal/index.js";
import { EntryType } from "../../server/src/raft/types.js";

const seconds = Number(process.env.BENCH_SECONDS ?? 2);
const runs = Number(process.env.BENCH_RUNS ?? 5);
const writerCounts = (process.env.BENCH_WRITERS ?? "1,64").split(",").map(Number);
const baseDir = process.env.BENCH_DIR ?? os.tmpdir();
const preallocation = (process.env.BENCH_PREALLOCATION ?? "zeros") as Preallocation;
const entryBytes = Number(process.env.BENCH_ENTRY_BYTES ?? 256);

interface RunResult {
  appendsPerSecond: number;
  fsyncsPerSecond: number;
  appendsPerFsync: number;
  fsyncMsMean: number;
}

async function runOnce(writers: number): Promise<RunResult> {
  const root = mkdtempSync(path.join(baseDir, "etcd-ts-wal-bench-"));
  try {
    const wal = await Wal.create(path.join(root, "wal"), new Uint8Array(16), { preallocation });
    const data = new Uint8Array(entryBytes).fill(0x61);
    let next = 1;
    let appends = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    const loop = async (): Promise<void> => {
      for (let guard = 0; guard < 10_000_000 && performance.now() < end; guard++) {
        const index = next++;
        await wal.save({ term: 1, vote: 1n, commit: index - 1 }, [{ index, term: 1, type: EntryType.Normal, data }], { sync: true });
        appends++;
      }
    };
    await Promise.all(Array.from({ length: writers }, loop));
    const elapsedS = (performance.now() - start) / 1000;
    const st = wal.stats();
    await wal.close();
    return {
      appendsPerSecond: appends / elapsedS,
      fsyncsPerSecond: st.fsyncs / elapsedS,
      appendsPerFsync: appends / Math.max(1, st.fsyncs),
      fsyncMsMean: st.fsyncMsTotal / Math.max(1, st.fsyncs),
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  console.log(
    `wal-fsync: ${entryBytes}-byte entries, ${runs} runs x ${seconds}s, preallocation=${preallocation}, dir=${baseDir}, node ${process.version}`,
  );
  for (const writers of writerCounts) {
    const results: RunResult[] = [];
    for (let r = 0; r < runs; r++) results.push(await runOnce(writers));
    const pick = (f: (x: RunResult) => number): string => median(results.map(f)).toFixed(1);
    console.log(
      `writers=${String(writers).padStart(3)}  appends+fsync/s median ${pick((x) => x.appendsPerSecond)} ` +
        `(runs: ${results.map((x) => x.appendsPerSecond.toFixed(0)).join(", ")}; ` +
        `${(1e6 / median(results.map((x) => x.appendsPerSecond))).toFixed(0)} us/append)  ` +
        `fsyncs/s ${pick((x) => x.fsyncsPerSecond)}  appends/fsync ${pick((x) => x.appendsPerFsync)}  ` +
        `sync mean ${pick((x) => x.fsyncMsMean)} ms`,
    );
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
