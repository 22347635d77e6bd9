/** The watch checks fire on hand-made bad watcher records and stay quiet on good ones. */
import { describe, expect, it } from "vitest";
import { checkWatches, type SeenEvent, type WatchRecord } from "./watch-check.js";

const put = (key: string, value: string, modRevision: number): SeenEvent => ({ type: "PUT", key, value, modRevision });

function verdict(records: WatchRecord[]): string {
  const r = checkWatches(records);
  return "violation" in r ? r.violation : "ok";
}

describe("checkWatches: a start revision below the compaction", () => {
  const below = (over: Partial<WatchRecord>): WatchRecord => ({ label: "w", startRevision: 3, compactRevisionAtStart: 5, responses: [], ...over });

  it("accepts a refusal carrying the compact revision and no events", () => {
    expect(verdict([below({ compactRevision: 5 })])).toBe("ok");
    expect(verdict([below({ compactRevision: 7 })])).toBe("ok");
  });

  it("rejects events served from a compacted start", () => {
    expect(verdict([below({ responses: [{ events: [put("a", "1", 3)], compactRevision: 5 }] })])).toMatch(/served events from revision 3/);
    expect(verdict([below({ compactRevision: 5, responses: [{ events: [put("a", "1", 6)], compactRevision: 5 }] })])).toMatch(/served events/);
  });

  it("rejects a watch that was never refused, or refused with an older compaction", () => {
    expect(verdict([below({})])).toMatch(/never refused/);
    expect(verdict([below({ compactRevision: 4 })])).toMatch(/compact revision 4/);
  });

  it("serves a watch from exactly the compact revision", () => {
    expect(verdict([{ label: "w", startRevision: 5, compactRevisionAtStart: 5, responses: [{ events: [put("a", "1", 6)], compactRevision: 5 }] }])).toBe("ok");
  });
});
