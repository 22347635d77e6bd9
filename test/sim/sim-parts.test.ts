import { describe, expect, it } from "vitest";
import { SimDisk } from "./sim-disk.js";
import { SimNetwork } from "./sim-network.js";
import { SimRng } from "./sim-rng.js";
import { KvStateMachine } from "./kv-model.js";
import { EntryType, type Entry } from "../../server/src/raft/types.js";

const ent = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array([index]) });

describe("SimRng", () => {
  it("replays from a seed and forks independent streams", () => {
    const a = new SimRng(42);
    const b = new SimRng(42);
    const xs = Array.from({ length: 20 }, () => a.nextInt(1000));
    expect(Array.from({ length: 20 }, () => b.nextInt(1000))).toEqual(xs);
    expect(new SimRng(43).nextInt(1_000_000)).not.toBe(new SimRng(42).nextInt(1_000_000));
    const f1 = new SimRng(7).fork("net");
    const f2 = new SimRng(7).fork("net");
    expect(f1.nextU32()).toBe(f2.nextU32());
  });

  it("stays in range", () => {
    const r = new SimRng(1);
    for (let i = 0; i < 1000; i++) {
      const v = r.between(3, 5);
      expect(v >= 3 && v <= 5).toBe(true);
    }
  });
});

describe("SimDisk", () => {
  it("keeps synced writes and loses unsynced ones on a crash", () => {
    const disk = new SimDisk();
    disk.write({ hardState: { term: 1, vote: 1n, commit: 0 }, entries: [ent(1, 1), ent(2, 1)] });
    disk.sync();
    disk.write({ hardState: { term: 1, vote: 1n, commit: 2 }, entries: [] });
    // A seed whose crash keeps nothing: try until one loses the record.
    let lostOnce = false;
    for (let seed = 0; seed < 20 && !lostOnce; seed++) {
      const d = new SimDisk();
      d.write({ hardState: { term: 1, vote: 1n, commit: 0 }, entries: [ent(1, 1)] });
      d.sync();
      d.write({ hardState: { term: 1, vote: 1n, commit: 1 }, entries: [] });
      const lost = d.crash(new SimRng(seed));
      if (lost === 1) {
        expect(d.durableState().hardState.commit).toBe(0);
        lostOnce = true;
      } else {
        expect(d.durableState().hardState.commit).toBe(1);
      }
    }
    expect(lostOnce).toBe(true);
    disk.sync();
    const s = disk.rebuildStorage();
    expect(s.lastIndex()).toBe(2);
    expect(s.initialState().hardState.commit).toBe(2);
  });

  it("truncates a conflicting suffix and rejects gaps", () => {
    const disk = new SimDisk();
    disk.write({ entries: [ent(1, 1), ent(2, 1), ent(3, 1)] });
    disk.write({ entries: [ent(2, 2)] });
    disk.sync();
    const s = disk.rebuildStorage();
    expect(s.lastIndex()).toBe(2);
    expect(s.term(2)).toBe(2);
    disk.write({ entries: [ent(5, 2)] });
    expect(() => disk.sync()).toThrow(/gap/);
  });

  it("rebuilds from a snapshot and compacted log", () => {
    const disk = new SimDisk();
    disk.write({ hardState: { term: 2, vote: 0n, commit: 4 }, entries: [ent(1, 1), ent(2, 1), ent(3, 2), ent(4, 2), ent(5, 2)] });
    disk.saveLocalSnapshot(
      { metadata: { index: 3, term: 2, confState: { voters: [1n], learners: [] } }, data: new Uint8Array() },
      2,
    );
    const s = disk.rebuildStorage();
    expect(s.firstIndex()).toBe(4);
    expect(s.lastIndex()).toBe(5);
    expect(s.term(3)).toBe(2);
    expect(s.initialState().confState.voters).toEqual([1n]);
    // A snapshot received from the leader replaces the log.
    disk.write({
      snapshot: { metadata: { index: 9, term: 3, confState: { voters: [1n, 2n], learners: [] } }, data: new Uint8Array() },
      hardState: { term: 3, vote: 0n, commit: 9 },
      entries: [],
    });
    disk.sync();
    const s2 = disk.rebuildStorage();
    expect(s2.firstIndex()).toBe(10);
    expect(s2.lastIndex()).toBe(9);
  });
});

describe("SimNetwork", () => {
  it("delivers in time order, drops on partitions and heals", () => {
    const net = new SimNetwork<string>(new SimRng(3));
    net.setFaults({ dropRate: 0, duplicateRate: 0, minDelayUnits: 1, maxDelayUnits: 10 });
    for (let i = 0; i < 50; i++) net.send(1n, 2n, `m${i}`, 0, (m) => m);
    let last = -1;
    let got = 0;
    for (let t = 0; t <= 10; t++) {
      for (let m = net.popDue(t); m; m = net.popDue(t)) {
        expect(m.deliverAt).toBeGreaterThanOrEqual(last);
        last = m.deliverAt;
        got++;
      }
    }
    expect(got).toBe(50);
    net.partition([[1n], [2n, 3n]]);
    expect(net.send(1n, 2n, "x", 0, (m) => m)).toBe("blocked");
    expect(net.send(2n, 1n, "x", 0, (m) => m)).toBe("blocked");
    expect(net.send(2n, 3n, "x", 0, (m) => m)).toBe("queued");
    net.heal(true);
    net.blockOneWay(1n, 2n);
    expect(net.send(1n, 2n, "x", 0, (m) => m)).toBe("blocked");
    expect(net.send(2n, 1n, "x", 0, (m) => m)).toBe("queued");
  });

  it("duplicates and drops at the configured rates", () => {
    const net = new SimNetwork<number>(new SimRng(9));
    net.setFaults({ dropRate: 0.2, duplicateRate: 0.2, minDelayUnits: 1, maxDelayUnits: 1 });
    for (let i = 0; i < 1000; i++) net.send(1n, 2n, i, 0, (m) => m);
    expect(net.dropped).toBeGreaterThan(120);
    expect(net.dropped).toBeLessThan(280);
    expect(net.duplicated).toBeGreaterThan(100);
    expect(net.inFlightCount()).toBe(1000 - net.dropped + net.duplicated);
  });
});

describe("KvStateMachine", () => {
  it("applies a request id once and round-trips through a snapshot", () => {
    const sm = new KvStateMachine();
    expect(sm.apply({ requestId: "r1", input: { kind: "cas", key: "a", expected: null, value: "1" } })).toEqual({ kind: "cas", ok: true });
    expect(sm.apply({ requestId: "r1", input: { kind: "cas", key: "a", expected: null, value: "1" } })).toEqual({ kind: "cas", ok: true });
    expect(sm.apply({ requestId: "r2", input: { kind: "cas", key: "a", expected: null, value: "2" } })).toEqual({ kind: "cas", ok: false });
    sm.apply({ requestId: "r3", input: { kind: "put", key: "b", value: "x" } });
    const other = new KvStateMachine();
    other.restore(sm.snapshot());
    expect(other.digest()).toBe(sm.digest());
    expect(other.get("a")).toBe("1");
    expect(other.resultOf("r2")).toEqual({ kind: "cas", ok: false });
  });
});
