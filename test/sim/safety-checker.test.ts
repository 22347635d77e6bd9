/** Each safety check fires on a hand-made bad observation and stays quiet on a good one. */
import { describe, expect, it } from "vitest";
import { SafetyChecker, Violation, type LogView } from "./safety-checker.js";
import { EntryType, type Entry } from "../../server/src/raft/types.js";

const ent = (index: number, term: number, byte = index): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array([byte]) });

/** A log given as the terms of entries 1..n, with an optional snapshot index. */
function view(terms: number[], snapshotIndex = 0): LogView {
  return {
    termAt: (i) => (i < snapshotIndex || i > terms.length ? undefined : i === 0 ? 0 : terms[i - 1]),
    snapshotIndex: () => snapshotIndex,
    lastIndex: () => terms.length,
  };
}

function violation(f: () => void): string {
  try {
    f();
  } catch (e) {
    if (e instanceof Violation) return e.invariant;
    throw e;
  }
  return "none";
}

describe("SafetyChecker", () => {
  it("election safety: two leaders in one term", () => {
    const c = new SafetyChecker();
    c.observeLeader(1n, 2, view([1, 1]));
    c.observeLeader(1n, 2, view([1, 1])); // the same leader again is fine
    expect(violation(() => c.observeLeader(2n, 2, view([1, 1])))).toBe("election safety");
  });

  it("log matching: same index and term, different entry or different history", () => {
    const c = new SafetyChecker();
    c.observePersistedEntries(1n, [ent(1, 1), ent(2, 1)], view([1, 1]));
    expect(violation(() => c.observePersistedEntries(2n, [ent(2, 1, 99)], view([1, 1])))).toBe("log matching");
    expect(violation(() => c.observePersistedEntries(3n, [ent(2, 1)], view([2, 1])))).toBe("log matching");
    expect(violation(() => c.observePersistedEntries(4n, [ent(1, 1), ent(2, 1)], view([1, 1])))).toBe("none");
  });

  it("leader completeness: a later leader lacks a committed entry", () => {
    const c = new SafetyChecker();
    c.observeCommit(1n, 0, 2, 1, view([1, 1]));
    expect(violation(() => c.observeLeader(2n, 2, view([1, 1, 2])))).toBe("none");
    expect(violation(() => c.observeLeader(3n, 3, view([1, 2])))).toBe("leader completeness");
    expect(violation(() => c.observeLeader(3n, 4, view([1])))).toBe("leader completeness");
    // Covered by the leader's snapshot: nothing to compare.
    expect(violation(() => c.observeLeader(3n, 5, view([1, 1, 5], 2)))).toBe("none");
  });

  it("committed entries never change", () => {
    const c = new SafetyChecker();
    c.observeCommit(1n, 0, 2, 1, view([1, 1]));
    expect(violation(() => c.observeCommit(2n, 0, 2, 3, view([1, 3])))).toBe("committed entry changed");
    expect(violation(() => c.observeCommit(2n, 0, 3, 3, view([1, 1])))).toBe("commit bound");
  });

  it("state machine safety: different entries or states at one index", () => {
    const c = new SafetyChecker();
    c.observeApply(1n, ent(1, 1), "d1");
    expect(violation(() => c.observeApply(2n, ent(1, 1), "d1"))).toBe("none");
    expect(violation(() => c.observeApply(2n, ent(1, 2), "d1"))).toBe("state machine safety");
    expect(violation(() => c.observeApply(2n, ent(1, 1), "other"))).toBe("state machine safety");
  });

  it("one vote per term and terms never go back", () => {
    const c = new SafetyChecker();
    c.observeHardState(1n, 2, 3n);
    expect(violation(() => c.observeHardState(1n, 2, 3n))).toBe("none");
    expect(violation(() => c.observeHardState(1n, 2, 0n))).toBe("none");
    expect(violation(() => c.observeHardState(1n, 2, 2n))).toBe("one vote per term");
    c.observeHardState(1n, 5, 0n);
    expect(violation(() => c.observeHardState(1n, 4, 0n))).toBe("term monotonic");
  });

  it("leaders only append", () => {
    const c = new SafetyChecker();
    expect(violation(() => c.observeLeaderAppend(1n, 2, 5, [ent(6, 2)]))).toBe("none");
    expect(violation(() => c.observeLeaderAppend(1n, 2, 5, [ent(5, 2)]))).toBe("leader append-only");
  });
});
