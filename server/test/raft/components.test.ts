/**
 * Unit tests of the Raft core's building blocks: MemoryStorage, the unstable log, Inflights and
 * Progress (flow control, §5.3 "the leader maintains a nextIndex for each follower"), the
 * ConfChange codec, the seeded RNG, and restart from storage.
 */
import { describe, it, expect } from "vitest";
import {
  ConfChangeType, EntryType, ErrCompacted, ErrUnavailable, Inflights, MemoryStorage, Progress, RawNode,
  StateRole, UnstableLog, decodeConfChange, encodeConfChange, seededRng, type Entry,
} from "../../src/raft/index.js";
import { ErrSnapOutOfDate } from "../../src/raft/storage.js";
import { defaultConfig, enc, Network } from "./network.js";

function ents(...terms: number[]): Entry[] {
  return terms.map((t, i) => ({ term: t, index: i + 1, type: EntryType.Normal, data: enc.encode(`e${i + 1}`) }));
}

describe("MemoryStorage", () => {
  it("starts with a dummy entry at index 0", () => {
    const s = new MemoryStorage();
    expect(s.firstIndex()).toBe(1);
    expect(s.lastIndex()).toBe(0);
    expect(s.term(0)).toBe(0);
    expect(() => s.term(1)).toThrow(ErrUnavailable);
  });

  it("entries: half-open range, size limit with at least one entry, compaction errors", () => {
    const s = new MemoryStorage();
    s.append(ents(1, 1, 2, 2, 3));
    expect(s.entries(2, 5, Infinity).map((e) => e.index)).toEqual([2, 3, 4]);
    expect(s.entries(2, 5, 1).map((e) => e.index)).toEqual([2]);
    expect(s.entries(2, 5, 30).map((e) => e.index)).toEqual([2, 3]); // 14 + 14 bytes
    expect(() => s.entries(2, 7, Infinity)).toThrow(ErrUnavailable);
    s.compact(3);
    expect(s.firstIndex()).toBe(4);
    expect(s.term(3)).toBe(2);
    expect(() => s.entries(3, 5, Infinity)).toThrow(ErrCompacted);
    expect(() => s.term(2)).toThrow(ErrCompacted);
    expect(() => s.compact(2)).toThrow(ErrCompacted);
  });

  it("append truncates a conflicting suffix and ignores compacted entries", () => {
    const s = new MemoryStorage();
    s.append(ents(1, 1, 1, 1));
    s.append([{ term: 2, index: 3, type: EntryType.Normal, data: new Uint8Array(0) }]);
    expect(s.lastIndex()).toBe(3);
    expect(s.term(3)).toBe(2);
    s.compact(2);
    s.append(ents(1, 1, 2, 2));
    expect(s.lastIndex()).toBe(4);
    expect(s.term(4)).toBe(2);
  });

  it("snapshots: create, apply, out-of-date", () => {
    const s = new MemoryStorage();
    s.append(ents(1, 1, 2));
    const snap = s.createSnapshot(2, { voters: [1n], learners: [] }, enc.encode("img"));
    expect(snap.metadata).toEqual({ index: 2, term: 1, confState: { voters: [1n], learners: [] } });
    expect(() => s.createSnapshot(1, undefined, new Uint8Array(0))).toThrow(ErrSnapOutOfDate);
    const t = new MemoryStorage();
    t.applySnapshot(snap);
    expect(t.firstIndex()).toBe(3);
    expect(t.lastIndex()).toBe(2);
    expect(t.initialState().confState.voters).toEqual([1n]);
    expect(() => t.applySnapshot(snap)).toThrow(ErrSnapOutOfDate);
  });
});

describe("UnstableLog", () => {
  it("hands entries out once and drops them when stable", () => {
    const u = new UnstableLog(1);
    u.truncateAndAppend(ents(1, 1));
    expect(u.nextEntries().length).toBe(2);
    u.acceptInProgress();
    expect(u.nextEntries().length).toBe(0);
    u.truncateAndAppend([{ term: 1, index: 3, type: EntryType.Normal, data: new Uint8Array(0) }]);
    expect(u.nextEntries().map((e) => e.index)).toEqual([3]);
    u.stableTo(2, 1);
    expect(u.offset).toBe(3);
    expect(u.entries.map((e) => e.index)).toEqual([3]);
  });

  it("does not drop entries that were replaced after being handed out", () => {
    const u = new UnstableLog(1);
    u.truncateAndAppend(ents(1, 1));
    u.acceptInProgress();
    u.truncateAndAppend([{ term: 2, index: 2, type: EntryType.Normal, data: new Uint8Array(0) }]);
    expect(u.nextEntries().map((e) => [e.index, e.term])).toEqual([[2, 2]]);
    u.stableTo(2, 1); // the old entry at 2 was persisted, but it is gone now
    expect(u.entries.length).toBe(2);
  });
});

describe("§5.3 Flow control: Inflights and Progress", () => {
  it("Inflights is a bounded FIFO freed by acknowledgements", () => {
    const f = new Inflights(3);
    f.add(5);
    f.add(7);
    f.add(9);
    expect(f.full()).toBe(true);
    expect(() => f.add(11)).toThrow();
    f.freeLE(7);
    expect(f.size()).toBe(1);
    f.add(11);
    f.add(13);
    expect(f.full()).toBe(true);
    f.freeFirstOne();
    expect(f.size()).toBe(2);
    f.freeLE(100);
    expect(f.size()).toBe(0);
  });

  it("probe → replicate → probe; stale rejections are ignored", () => {
    const pr = new Progress(10, 4, false, true);
    expect(pr.state).toBe("probe");
    expect(pr.maybeDecrTo(5, 5)).toBe(false); // not the index we probed (next-1 = 9)
    expect(pr.maybeDecrTo(9, 3)).toBe(true);
    expect(pr.next).toBe(4);
    expect(pr.maybeUpdate(3)).toBe(true);
    pr.becomeReplicate();
    expect(pr.next).toBe(4);
    pr.optimisticUpdate(8);
    expect(pr.next).toBe(9);
    expect(pr.maybeDecrTo(2, 2)).toBe(false); // below match: stale
    expect(pr.maybeDecrTo(6, 6)).toBe(true);
    expect(pr.next).toBe(4); // back to match + 1
  });

  it("a reordered stale rejection never moves next below match + 1", () => {
    const pr = new Progress(6, 4, false, true);
    pr.maybeUpdate(5);
    pr.becomeProbe();
    expect(pr.next).toBe(6);
    expect(pr.maybeDecrTo(5, 2)).toBe(true);
    expect(pr.next).toBe(6);
  });

  it("snapshot state pauses sending; probing resumes after the snapshot index", () => {
    const pr = new Progress(10, 4, false, true);
    pr.becomeSnapshot(20);
    expect(pr.isPaused()).toBe(true);
    pr.becomeProbe();
    expect(pr.next).toBe(21);
  });
});

describe("ConfChange codec (etcd raftpb.ConfChange bytes)", () => {
  it("round-trips and matches etcd's encoding", () => {
    const cc = { id: 0x1234n, type: ConfChangeType.AddLearnerNode, nodeId: 0x8e9e05c52164694dn, context: enc.encode("{}") };
    const bytes = encodeConfChange(cc);
    expect(decodeConfChange(bytes)).toEqual(cc);
    // ID=1, Type=RemoveNode, NodeID=300
    expect([...encodeConfChange({ id: 1n, type: ConfChangeType.RemoveNode, nodeId: 300n, context: new Uint8Array(0) })])
      .toEqual([0x08, 0x01, 0x10, 0x01, 0x18, 0xac, 0x02]);
  });
});

describe("seeded RNG", () => {
  it("is deterministic and in range", () => {
    const a = seededRng(42);
    const b = seededRng(42);
    const xs = Array.from({ length: 100 }, () => a.nextInt(10));
    expect(Array.from({ length: 100 }, () => b.nextInt(10))).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 10)).toBe(true);
    expect(new Set(xs).size).toBe(10);
    expect(() => a.nextInt(0)).toThrow();
  });
});

describe("restart from storage", () => {
  it("a member restarted from its storage keeps term, vote, commit, log and configuration", () => {
    const net = new Network(3);
    net.elect(1);
    for (let i = 0; i < 3; i++) net.get(1).rn.propose(enc.encode(`x${i}`));
    net.stabilize();
    const old = net.get(2);
    const st = old.rn.status();
    const rn = new RawNode(defaultConfig(2n, { applied: st.applied }), { storage: old.storage, rng: seededRng(9) });
    const st2 = rn.status();
    expect(st2.hardState).toEqual(st.hardState);
    expect(st2.confState).toEqual(st.confState);
    expect(st2.lastIndex).toBe(st.lastIndex);
    expect(st2.softState.role).toBe(StateRole.Follower);
    // Nothing to persist or apply again.
    expect(rn.hasReady()).toBe(false);
  });

  it("without `applied`, committed entries are handed out again after a restart", () => {
    const net = new Network(1);
    net.elect(1);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    const rn = new RawNode(defaultConfig(1n), { storage: net.get(1).storage, rng: seededRng(9) });
    const rd = rn.ready();
    expect(rd.committedEntries.map((e) => new TextDecoder().decode(e.data))).toEqual(["", "x"]);
  });
});
