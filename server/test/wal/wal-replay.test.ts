/**
 * The replay rules every WAL reads back by (wal-replay.ts), on record sequences a member writes:
 * in particular a follower's log truncated by a new leader and then snapshotted, whose
 * overwritten entries lie before the snapshot marker in the segment the replay starts from.
 */
import { expect, it } from "vitest";
import { WalReplay } from "../../src/wal/wal-replay.js";
import { EntryType, type Entry } from "../../src/raft/types.js";

const e = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array(0) });
const ids = (r: WalReplay): string[] => r.entries.map((x) => `${x.index}:${x.term}`);

it("an entry above the snapshot replaces its index and drops what followed", () => {
  const r = new WalReplay({ index: 0, term: 0 });
  for (const x of [e(1, 1), e(2, 1), e(3, 1), e(2, 2)]) r.entry(x, "f", 0);
  expect(ids(r)).toEqual(["1:1", "2:2"]);
});

it("an entry at or below the snapshot drops the entries read before it (all of them come after it)", () => {
  // A deposed leader's uncommitted 12..15 (term 3), then the new leader's 10 and 11 (terms 4 and
  // 5) truncating them, then a snapshot at 11: from that snapshot the log is empty, not 12..15.
  const r = new WalReplay({ index: 11, term: 5 });
  for (let i = 8; i <= 15; i++) r.entry(e(i, 3), "f", 0);
  expect(ids(r)).toEqual(["12:3", "13:3", "14:3", "15:3"]);
  r.entry(e(10, 4), "f", 0);
  r.entry(e(11, 5), "f", 0);
  r.snapshot({ index: 11, term: 5 });
  expect(r.matched).toBe(true);
  expect(ids(r)).toEqual([]);
  r.entry(e(12, 5), "f", 0);
  expect(ids(r)).toEqual(["12:5"]);
});
