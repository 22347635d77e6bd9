/** Auto-compaction decisions in both of etcd's modes, on a fake clock. */
import { describe, expect, it } from "vitest";
import { Compactor } from "../../src/server/compactor.js";
import { systemClock } from "../../src/pkg/clock.js";
import { nullLogger } from "../../src/pkg/logger.js";

function harness(mode: "periodic" | "revision", retention: string) {
  const state = { rev: 1, compacted: -1, leader: true, calls: [] as number[] };
  const c = new Compactor(
    { mode, retention },
    {
      currentRevision: () => state.rev,
      compactRevision: () => state.compacted,
      isLeader: () => state.leader,
      compact: async (r) => {
        state.calls.push(r);
        state.compacted = r;
      },
      clock: systemClock,
      logger: nullLogger,
    },
  );
  return { c, state };
}

describe("Compactor", () => {
  it("revision mode keeps the newest `retention` revisions", () => {
    const { c, state } = harness("revision", "10");
    expect(c.enabled).toBe(true);
    state.rev = 5;
    c.tick(0);
    expect(state.calls).toEqual([]); // nothing older than the retention yet
    state.rev = 25;
    c.tick(1);
    expect(state.calls).toEqual([15]);
    c.tick(2);
    expect(state.calls).toEqual([15]); // already compacted there
    state.rev = 40;
    state.leader = false;
    c.tick(3);
    expect(state.calls).toEqual([15]); // only the leader compacts
    state.leader = true;
    c.tick(4);
    expect(state.calls).toEqual([15, 30]);
  });

  it("periodic mode compacts at the revision seen one retention ago (hours when a bare number)", () => {
    const { c, state } = harness("periodic", "1");
    const hour = 3600_000;
    // Samples every retention/10; the compaction point trails by one retention.
    for (let t = 0; t <= 2 * hour; t += hour / 10) {
      state.rev = 100 + t / (hour / 10);
      c.tick(t);
    }
    // At t = 2h the sample from t = 1h (revision 110) is one retention old.
    expect(state.calls.at(-1)).toBe(110);
    expect(state.calls[0]).toBe(100);
  });

  it("periodic mode takes Go durations, and 0 disables", () => {
    expect(harness("periodic", "30m").c.enabled).toBe(true);
    expect(harness("periodic", "0").c.enabled).toBe(false);
    expect(harness("revision", "0").c.enabled).toBe(false);
  });
});
