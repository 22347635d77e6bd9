/** The crash test's judge must catch each kind of violation it claims to (history-check.ts). */
import { describe, expect, it } from "vitest";
import { attemptId, checkHistory, type Ack, type CheckInput, type HistoryEvent } from "./history-check.js";

/** A consistent run: writer 0 puts a=1 (2), b=1 (3), deletes a (4); writer 1's put a=2 (5) was in flight. */
function base(): CheckInput {
  const acks: Ack[] = [
    { key: "a", value: "1", type: "PUT", revision: 2, writer: 0 },
    { key: "b", value: "1", type: "PUT", revision: 3, writer: 0 },
    { key: "a", value: "", type: "DELETE", revision: 4, writer: 0 },
  ];
  const history: HistoryEvent[] = [
    { key: "a", value: "1", type: "PUT", revision: 2 },
    { key: "b", value: "1", type: "PUT", revision: 3 },
    { key: "a", value: "", type: "DELETE", revision: 4 },
    { key: "a", value: "2", type: "PUT", revision: 5 },
  ];
  const attempted = new Set([attemptId("PUT", "a", "1"), attemptId("PUT", "b", "1"), attemptId("DELETE", "a", ""), attemptId("PUT", "a", "2")]);
  return {
    acks,
    attempted,
    history,
    head: 5,
    state: [
      { key: "a", value: "2", modRevision: 5 },
      { key: "b", value: "1", modRevision: 3 },
    ],
  };
}

describe("crash history check", () => {
  it("accepts a consistent run, including an applied but unacknowledged write", () => {
    expect(checkHistory(base())).toEqual([]);
  });

  it("reports a lost acknowledged write", () => {
    const input = base();
    input.history = input.history.filter((e) => e.revision !== 3);
    input.state = input.state.filter((kv) => kv.key !== "b");
    expect(checkHistory(input).join("\n")).toMatch(/revision 3 is missing[\s\S]*acknowledged b=1 at revision 3 is lost/);
  });

  it("reports a head below the highest acknowledged revision", () => {
    const input = base();
    input.acks = [...input.acks, { key: "c", value: "1", type: "PUT", revision: 9, writer: 1 }];
    expect(checkHistory(input).join("\n")).toMatch(/head revision 5 is below the highest acknowledged revision 9/);
  });

  it("reports repeated and acknowledged-twice revisions", () => {
    const input = base();
    input.acks = [...input.acks, { key: "a", value: "2", type: "PUT", revision: 4, writer: 1 }];
    input.history = [...input.history, { key: "b", value: "1", type: "PUT", revision: 3 }];
    const text = checkHistory(input).join("\n");
    expect(text).toMatch(/revision 4 acknowledged twice/);
    expect(text).toMatch(/revision 3 appears twice/);
  });

  it("reports revisions going backwards within a writer", () => {
    const input = base();
    input.acks = [input.acks[1]!, input.acks[0]!, input.acks[2]!];
    expect(checkHistory(input).join("\n")).toMatch(/writer 0: acknowledged revision 2 after 3/);
  });

  it("reports a different value at an acknowledged revision and events nobody asked for", () => {
    const input = base();
    input.history = input.history.map((e) => (e.revision === 2 ? { ...e, value: "garbage" } : e));
    const text = checkHistory(input).join("\n");
    expect(text).toMatch(/revision 2: a=garbage was never requested/);
    expect(text).toMatch(/revision 2: acknowledged a=1, history has a=garbage/);
  });

  it("reports a current state that disagrees with the history", () => {
    const input = base();
    input.state = [{ key: "a", value: "1", modRevision: 2 }];
    const text = checkHistory(input).join("\n");
    expect(text).toMatch(/current a=1 at rev 2, history ends with 2 at rev 5/);
    expect(text).toMatch(/b missing from the current state/);
  });
});
