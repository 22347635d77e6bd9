import { describe, expect, it } from "vitest";
import { SimNetwork } from "./sim-network.js";
import { SimRng } from "./sim-rng.js";
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
