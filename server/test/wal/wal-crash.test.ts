/**
 * Seeded crash tests: write and fsync random batches, then damage the newest segment the way a
 * crash (or a bad disk) would — truncate it, zero a range, flip bits in its tail or anywhere — and
 * check that open keeps exactly the records before the first damaged one and cuts the rest when
 * nothing valid follows, or refuses with ErrWalCorrupt (naming file and offset) when valid records
 * follow the damage or the damage is in a sealed segment.
 *
 * SEED=<n> replays one scenario family, RUNS=<n> sets how many scenarios run.
 */
import { readdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrWalCorrupt, Wal } from "../../src/wal/index.js";
import {
  CRC_PAYLOAD_BYTES,
  entryPayloadBytes,
  frameSizeBytes,
  hardStatePayloadBytes,
  SYNC_MARK_FRAME_BYTES,
} from "../../src/wal/record-codec.js";
import type { Entry, HardState } from "../../src/raft/types.js";
import { applyEntries, entry, rng, runsFromEnv, seedFromEnv, tempDir } from "./wal-helpers.js";

type Effect =
  | { kind: "entry"; e: Entry }
  | { kind: "hs"; hs: HardState }
  | { kind: "header" }
  | { kind: "mark"; syncedEnd: number };
interface Rec {
  file: string;
  start: number;
  end: number;
  effect: Effect;
}

let t: { dir: string; cleanup: () => void };
beforeEach(() => {
  t = tempDir("etcd-ts-wal-crash-");
});
afterEach(() => t.cleanup());

const META = new TextEncoder().encode("crash-test-metadata");

function expectedState(recs: Rec[]): { entries: Entry[]; hardState: HardState } {
  const entries: Entry[] = [];
  let hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  for (const r of recs) {
    if (r.effect.kind === "entry") applyEntries(entries, [r.effect.e]);
    else if (r.effect.kind === "hs") hardState = r.effect.hs;
  }
  return { entries, hardState };
}

async function scenario(seed: number, dir: string): Promise<string> {
  const rand = rng(seed);
  const segmentSizeBytes = rand.int(4096, 12000);
  const preallocation = rand.next() < 0.5 ? "zeros" : "sparse";
  const wal = await Wal.create(dir, META, { segmentSizeBytes, preallocation });
  const recs: Rec[] = [];
  let last = 0;
  let term = 1;
  let hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  let segmentFile = "";
  const batches = rand.int(3, 45);
  for (let b = 0; b < batches; b++) {
    const pos = wal.tailPosition();
    if (pos.path !== segmentFile) {
      // A new segment starts with header frames (crc, metadata, snapshot marker or hardState).
      recs.push({ file: pos.path, start: 0, end: pos.offsetBytes, effect: { kind: "header" } });
      segmentFile = pos.path;
    }
    const batch: Entry[] = [];
    let next = rand.next() < 0.15 ? Math.max(1, last - rand.int(0, 3)) : last + 1;
    if (next <= last) term++;
    // Sometimes end with one large write, so that a power loss can tear it in the middle.
    const count = b === batches - 1 && rand.next() < 0.6 ? rand.int(8, 25) : rand.int(0, 4);
    for (let k = count; k > 0; k--) batch.push(entry(next++, term, rand.bytes(rand.int(0, 400))));
    if (batch.length > 0) last = batch[batch.length - 1]!.index;
    const hs = rand.next() < 0.6 ? { term, vote: BigInt(rand.int(1, 5)), commit: Math.max(0, last - rand.int(0, 5)) } : undefined;
    let off = pos.offsetBytes;
    if (batch.length > 0 || hs !== undefined) {
      // Each write starts with a sync mark; every earlier save was fsynced, so it points at itself.
      recs.push({ file: pos.path, start: off, end: off + SYNC_MARK_FRAME_BYTES, effect: { kind: "mark", syncedEnd: off } });
      off += SYNC_MARK_FRAME_BYTES;
    }
    for (const e of batch) {
      const size = frameSizeBytes(entryPayloadBytes(e));
      recs.push({ file: pos.path, start: off, end: off + size, effect: { kind: "entry", e } });
      off += size;
    }
    if (hs !== undefined) {
      const size = frameSizeBytes(hardStatePayloadBytes());
      recs.push({ file: pos.path, start: off, end: off + size, effect: { kind: "hs", hs } });
      off += size;
      hardState = hs;
    }
    await wal.save(hs, batch, { sync: true });
  }
  const endPos = wal.tailPosition();
  if (endPos.path !== segmentFile) {
    // The last save filled its segment: the log was cut to a segment holding only its header.
    recs.push({ file: endPos.path, start: 0, end: endPos.offsetBytes, effect: { kind: "header" } });
  }
  await wal.close();
  void hardState;

  // Split the header records of each segment precisely: crc frame, metadata frame, third frame.
  const all: Rec[] = [];
  for (const r of recs) {
    if (r.effect.kind !== "header") {
      all.push(r);
      continue;
    }
    const crcEnd = frameSizeBytes(CRC_PAYLOAD_BYTES);
    const metaEnd = crcEnd + frameSizeBytes(META.length);
    all.push({ ...r, start: 0, end: crcEnd });
    all.push({ ...r, start: crcEnd, end: metaEnd });
    if (r.end > metaEnd) all.push({ ...r, start: metaEnd, end: r.end });
  }
  const files = [...new Set(all.map((r) => r.file))];
  if (process.env.WAL_CRASH_DEBUG) console.log(files, readdirSync(dir));
  const lastFile = files[files.length - 1]!;
  const inLast = all.filter((r) => r.file === lastFile);
  const dataEnd = inLast[inLast.length - 1]!.end;
  const isFirstSegment = files.length === 1;
  // The first segment's header is made durable before the log exists; never damage it.
  const low = isFirstSegment ? inLast[2]!.end : 0;

  const original = readFileSync(lastFile);
  let damaged: Buffer = Buffer.from(original);
  let truncatedAt = -1;
  let damagedFile = lastFile;
  const mode = rand.int(0, 6);
  let desc = "";
  if (mode === 0) {
    truncatedAt = rand.int(low, dataEnd);
    damaged = damaged.subarray(0, truncatedAt);
    desc = `truncate at ${truncatedAt}`;
  } else if (mode === 1 || mode === 2) {
    const window = rand.int(1, mode === 1 ? 256 : dataEnd);
    const from = Math.max(low, dataEnd - window);
    const flips = rand.int(1, 3);
    const at: number[] = [];
    for (let k = 0; k < flips; k++) {
      const o = rand.int(from, dataEnd - 1);
      damaged[o]! ^= 1 << rand.int(0, 7);
      at.push(o);
    }
    desc = `flip bits at ${at.join(",")}`;
  } else if (mode === 6) {
    // Power loss during the last write: some 512-byte sectors of it never reached the disk.
    const marks = inLast.filter((r) => r.effect.kind === "mark");
    const lastWriteAt = marks.length > 0 ? marks[marks.length - 1]!.start : 0;
    const from = rand.next() < 0.7 ? lastWriteAt : dataEnd - 4096;
    const firstSector = Math.ceil(Math.max(low, from) / 512);
    const lastSector = Math.floor(dataEnd / 512) - 1;
    const at: number[] = [];
    for (let k = rand.int(1, 2); k > 0 && lastSector >= firstSector; k--) {
      const sct = rand.int(firstSector, lastSector) * 512;
      damaged.fill(0, sct, sct + 512);
      at.push(sct);
    }
    desc = `zero sectors at ${at.join(",")}`;
  } else if (mode === 3) {
    const a = rand.int(Math.max(low, dataEnd - 2000), dataEnd - 1);
    const b = rand.next() < 0.5 ? dataEnd : rand.int(a + 1, dataEnd);
    damaged.fill(0, a, b);
    desc = `zero [${a}, ${b})`;
  } else if (mode === 4 && damaged.length > dataEnd + 64) {
    const o = rand.int(dataEnd, dataEnd + 63);
    damaged[o]! ^= 1 << rand.int(0, 7);
    desc = `flip a bit after the data at ${o}`;
  } else if (files.length >= 2) {
    damagedFile = files[rand.int(0, files.length - 2)]!;
    const recsThere = all.filter((r) => r.file === damagedFile);
    const buf = readFileSync(damagedFile);
    const lo = damagedFile === files[0] ? recsThere[2]!.end : 0;
    const o = rand.int(lo, buf.length - 1);
    buf[o]! ^= 1 << rand.int(0, 7);
    writeFileSync(damagedFile, buf);
    desc = `flip a bit in sealed segment ${path.basename(damagedFile)} at ${o}`;
    const err = await Wal.open(dir, { index: 0, term: 0 }).then(
      (r) => r.wal.close().then(() => undefined),
      (e: unknown) => e,
    );
    expect(err, desc).toBeInstanceOf(ErrWalCorrupt);
    expect((err as ErrWalCorrupt).path, desc).toBe(damagedFile);
    return desc;
  } else {
    desc = "no damage";
  }
  if (truncatedAt >= 0) truncateSync(lastFile, truncatedAt);
  else writeFileSync(lastFile, damaged);

  // Which records changed?
  const isDamaged = (r: Rec): boolean => {
    if (r.file !== lastFile) return false;
    if (truncatedAt >= 0) return r.end > truncatedAt;
    for (let i = r.start; i < r.end; i++) if (original[i] !== damaged[i]) return true;
    return false;
  };
  const firstBad = all.findIndex(isDamaged);
  // The recovery rule (see wal.ts): damage at D is corruption if a later sync mark proves D was
  // fsynced, or if valid frames follow and no never-written (zero) sector explains the damage.
  let validAfter = false;
  let unsyncedCut = false;
  if (firstBad >= 0) {
    const d = all[firstBad]!.start;
    const intactAfter = all.slice(firstBad + 1).filter((r) => !isDamaged(r));
    const proof = intactAfter.some((r) => r.effect.kind === "mark" && r.effect.syncedEnd > d);
    const v = intactAfter.length > 0 ? intactAfter[0]!.start : -1;
    let zeroSector = false;
    for (let sct = Math.ceil(d / 512) * 512; v >= 0 && sct + 512 <= v; sct += 512) {
      if (damaged.subarray(sct, sct + 512).every((b) => b === 0)) zeroSector = true;
    }
    validAfter = proof || (v >= 0 && !zeroSector);
    unsyncedCut = !validAfter && v >= 0;
  }
  const outcome = await Wal.open(dir, { index: 0, term: 0 }, { segmentSizeBytes, preallocation }).then(
    (r) => r,
    (e: unknown) => e,
  );
  if (validAfter) {
    expect(outcome, desc).toBeInstanceOf(ErrWalCorrupt);
    expect((outcome as ErrWalCorrupt).path, desc).toBe(lastFile);
    expect((outcome as ErrWalCorrupt).offsetBytes, desc).toBe(all[firstBad]!.start);
    return `${desc} -> corrupt`;
  }
  if (outcome instanceof Error) throw new Error(`${desc}: unexpected ${outcome.message}`);
  const r = outcome as Awaited<ReturnType<typeof Wal.open>>;
  const kept = firstBad < 0 ? all : all.slice(0, firstBad);
  const want = expectedState(kept);
  expect(r.entries, desc).toEqual(want.entries);
  expect(r.hardState, desc).toEqual(want.hardState);
  // The repaired log takes appends and reads back with them.
  const lastIndex = want.entries.length > 0 ? want.entries[want.entries.length - 1]!.index : 0;
  const more = [entry(lastIndex + 1, 99, "after-repair"), entry(lastIndex + 2, 99, "after-repair-2")];
  const moreHs = { term: 99, vote: 1n, commit: lastIndex };
  await r.wal.save(moreHs, more, { sync: true });
  await r.wal.close();
  const again = await Wal.open(dir, { index: 0, term: 0 });
  applyEntries(want.entries, more);
  expect(again.entries, desc).toEqual(want.entries);
  expect(again.hardState, desc).toEqual(moreHs);
  await again.wal.close();
  return `${desc} -> kept ${kept.length}/${all.length} records${unsyncedCut ? " (torn write cut before valid frames)" : ""}`;
}

describe("Wal crash recovery (seeded)", () => {
  it("cuts torn tails and refuses mid-log corruption", async () => {
    const seed0 = seedFromEnv(Date.now() % 1_000_000);
    const runs = runsFromEnv(60);
    const outcomes: Record<string, number> = {};
    for (let run = 0; run < runs; run++) {
      const seed = seed0 + run;
      try {
        const result = await scenario(seed, path.join(t.dir, `run-${run}`));
        const key = result.includes("corrupt")
          ? "corrupt"
          : result.includes("sealed")
            ? "sealed"
            : result.includes("torn write cut")
              ? "tornWriteCut"
              : "kept";
        outcomes[key] = (outcomes[key] ?? 0) + 1;
      } catch (e) {
        console.error(`seed=${seed} (SEED=${seed} RUNS=1 replays it)`);
        throw e;
      }
    }
    console.log(`wal crash: seed=${seed0} runs=${runs}`, outcomes);
  }, 600_000);
});
