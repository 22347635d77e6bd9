import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EntryType, type Entry, type HardState } from "../../src/raft/types.js";

/** A fresh temp directory; call the returned cleanup in afterEach. */
export function tempDir(prefix = "etcd-ts-wal-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** xorshift32: a tiny seeded RNG for reproducible tests. */
export function rng(seed: number): { next(): number; int(lo: number, hi: number): number; bytes(n: number): Uint8Array } {
  let s = seed >>> 0 || 0x9e3779b9;
  const next = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    bytes: (n) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
      return b;
    },
  };
}

export function entry(index: number, term: number, data: Uint8Array | string = `e${index}`): Entry {
  return {
    index,
    term,
    type: EntryType.Normal,
    data: typeof data === "string" ? new TextEncoder().encode(data) : data,
  };
}

export function hs(term: number, commit: number, vote = 1n): HardState {
  return { term, vote, commit };
}

/** The entries of a log model after applying `batch` (later indexes replace and drop the tail). */
export function applyEntries(model: Entry[], batch: Entry[]): void {
  for (const e of batch) {
    const first = model.length > 0 ? model[0]!.index : e.index;
    model.length = Math.max(0, e.index - first);
    model.push(e);
  }
}

export function seedFromEnv(fallback: number): number {
  const s = process.env.SEED;
  return s !== undefined && s !== "" ? Number(s) : fallback;
}

export function runsFromEnv(fallback: number): number {
  const r = process.env.RUNS;
  return r !== undefined && r !== "" ? Number(r) : fallback;
}
