import { describe, expect, it } from "vitest";
import { LinearizableReads } from "../../src/server/read-index.js";
import { IdGenerator } from "../../src/lease/lease-id.js";
import { ManualClock } from "../../src/pkg/clock.js";

/** One member's reads over a sink that records the contexts it asks raft with. */
function member(memberId: bigint, clock: ManualClock): { reads: LinearizableReads; contexts: string[] } {
  const contexts: string[] = [];
  const ids = new IdGenerator(memberId, clock.nowMs());
  const reads = new LinearizableReads(
    { requestTimeoutMs: 1000 },
    {
      raft: { readIndex: (ctx) => void contexts.push(Buffer.from(ctx).toString("hex")), leader: 1n },
      waitApplied: () => Promise.resolve(),
      nextRequestId: () => ids.next(),
      clock,
    },
  );
  return { reads, contexts };
}

describe("linearizable reads", () => {
  it("ask with contexts no other member uses (the leader keeps requests by context)", async () => {
    const clock = new ManualClock({ startMs: 1_700_000_000_000 });
    const members = [member(0x8e9e05c52164694dn, clock), member(0x91bc3c398fb3c146n, clock), member(0xfd422379fda50e48n, clock)];
    // Each member's first rounds at the same moment, as `endpoint health --cluster` makes them.
    for (const m of members) void m.reads.notify().catch(() => undefined);
    for (let round = 0; round < 3; round++) {
      for (const m of members) {
        const ctx = m.contexts.at(-1)!;
        m.reads.onReadStates([{ index: 1, requestCtx: Buffer.from(ctx, "hex") }]);
        void m.reads.notify().catch(() => undefined);
      }
    }
    const all = members.flatMap((m) => m.contexts);
    expect(all.length).toBe(12);
    expect(new Set(all).size).toBe(all.length);
    for (const m of members) m.reads.stop(new Error("stopped"));
  });
});
