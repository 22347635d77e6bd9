/**
 * The cluster fault tests' judge on made-up histories: a clean one passes, and each kind of
 * broken one (a lost acknowledged write, a stale linearizable read, a watch gap, a duplicate
 * watch event, a final state that disagrees with the watched history) is reported.
 */
import { describe, expect, it } from "vitest";
import type { EtcdOperation } from "../sim/etcd-model.js";
import type { WatchRecord } from "../sim/watch-check.js";
import { judgeHistory, type JudgeInput } from "./cluster-clients.js";

const put = (c: number, call: number, ret: number, key: string, value: string, revision: number | undefined): EtcdOperation => ({
  clientId: c,
  input: { kind: "put", key, value },
  output: revision === undefined ? undefined : { kind: "put", revision },
  call,
  ret: revision === undefined ? Infinity : ret,
});
const get = (c: number, call: number, ret: number, key: string, value: string | null, modRevision: number, revision: number): EtcdOperation => ({
  clientId: c,
  input: { kind: "get", key },
  output: { kind: "get", value, modRevision, revision },
  call,
  ret,
});

function watch(label: string, events: Array<[number, string, string]>): WatchRecord {
  return {
    label,
    startRevision: 1,
    compactRevisionAtStart: 0,
    responses: events.map(([rev, key, value]) => ({ events: [{ type: "PUT" as const, key, value, modRevision: rev }], compactRevision: 0 })),
  };
}

function clean(): JudgeInput {
  return {
    history: [put(0, 1, 2, "a", "x", 2), put(1, 3, 4, "b", "y", 3), get(0, 5, 6, "a", "x", 2, 3), put(1, 7, Infinity, "a", "z", undefined)],
    watches: [
      watch("w0", [[2, "a", "x"], [3, "b", "y"], [4, "a", "z"]]),
      watch("w1", [[2, "a", "x"], [3, "b", "y"], [4, "a", "z"]]),
    ],
    finalRevision: 4,
    finalState: [
      { key: "a", value: "z", modRevision: 4 },
      { key: "b", value: "y", modRevision: 3 },
    ],
  };
}

describe("cluster history judge", () => {
  it("accepts a clean history and resolves an unknown write from the watches", () => {
    const j = judgeHistory(clean());
    expect(j.problems).toEqual([]);
    expect(j.unknown).toBe(0);
    expect(j.linearizability).toBe("revisions");
  });

  it("reports a lost acknowledged write", () => {
    const input = clean();
    input.history.push(put(2, 8, 9, "c", "lost", 5));
    expect(judgeHistory(input).problems.join("\n")).toMatch(/lost|acknowledged|revision/);
  });

  it("reports a stale linearizable read", () => {
    const input = clean();
    // Called after the put of b returned, answered from before it.
    input.history.push(get(2, 5, 6, "b", null, 0, 2));
    expect(judgeHistory(input).problems.join("\n")).toMatch(/linearizab|revision/);
  });

  it("reports a watch gap and a duplicate", () => {
    const gap = clean();
    gap.watches[1] = watch("w1", [[2, "a", "x"], [4, "a", "z"]]);
    expect(judgeHistory(gap).problems.join("\n")).toMatch(/skipped/);
    const dup = clean();
    dup.watches[0] = watch("w0", [[2, "a", "x"], [3, "b", "y"], [3, "b", "y"], [4, "a", "z"]]);
    expect(judgeHistory(dup).problems.join("\n")).toMatch(/twice|split|order/);
  });

  it("reports a final state that is not the end of the watched history", () => {
    const input = clean();
    input.finalState = [{ key: "a", value: "x", modRevision: 2 }];
    const problems = judgeHistory(input).problems.join("\n");
    expect(problems).toMatch(/final a=x@2/);
    expect(problems).toMatch(/b .* missing from the final state/);
  });
});
