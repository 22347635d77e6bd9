/**
 * resolveUnknownWrites: what the watched history tells about writes whose client never learned
 * their outcome, unknown deletes in particular (matched to the deletions no acknowledged delete
 * made, or dropped as having deleted nothing).
 */
import { describe, expect, it } from "vitest";
import { checkRevisionLinearization, resolveUnknownWrites, type EtcdOperation } from "./etcd-model.js";
import type { RevisionHistory, SeenEvent } from "./watch-check.js";

const put = (key: string, value: string, call: number, ret: number, revision: number): EtcdOperation => ({
  clientId: 0, input: { kind: "put", key, value }, output: { kind: "put", revision }, call, ret,
});
const get = (key: string, value: string | null, modRevision: number, call: number, ret: number, revision: number): EtcdOperation => ({
  clientId: 0, input: { kind: "get", key }, output: { kind: "get", value, modRevision, revision }, call, ret,
});
const unknownDelete = (key: string, call: number): EtcdOperation => ({ clientId: 1, input: { kind: "delete", key }, output: undefined, call, ret: Infinity });

function history(events: Array<[number, "PUT" | "DELETE", string, string]>): RevisionHistory {
  const h: RevisionHistory = new Map();
  for (const [rev, type, key, value] of events) h.set(rev, [{ type, key, value, modRevision: rev, lease: 0n } as SeenEvent]);
  return h;
}

describe("resolveUnknownWrites: unknown deletes", () => {
  it("matches a deletion no acknowledged delete made to an unknown delete, and drops the rest", () => {
    const d1 = unknownDelete("k", 1);
    const d2 = unknownDelete("k", 2);
    const ops = [put("k", "a", 0, 1, 2), d1, d2, get("k", null, 0, 10, 11, 3)];
    const out = resolveUnknownWrites(ops, history([[2, "PUT", "k", "a"], [3, "DELETE", "k", ""]]), 3);
    expect(out).toContain(d1);
    expect(d1.output).toEqual({ kind: "delete", deleted: 1, revision: 3 });
    expect(out).not.toContain(d2);
    expect(checkRevisionLinearization(out)).toBeUndefined();
  });

  it("leaves the deletes open when none could have made a deletion (each was called after an answer at or past it)", () => {
    const d = unknownDelete("k", 20);
    // The read at revision 3 returned (tick 11) before the delete was called (tick 20): revision 3's deletion is not its.
    const ops = [put("k", "a", 0, 1, 2), get("k", null, 0, 10, 11, 3), d];
    const out = resolveUnknownWrites(ops, history([[2, "PUT", "k", "a"], [3, "DELETE", "k", ""]]), 3);
    expect(out).toContain(d);
    expect(d.output).toBeUndefined();
  });

  it("leaves the deletes open when the watched history has a gap", () => {
    const d = unknownDelete("k", 1);
    const out = resolveUnknownWrites([put("k", "a", 0, 1, 2), d], history([[2, "PUT", "k", "a"], [4, "DELETE", "k", ""]]), 4);
    expect(out).toContain(d);
    expect(d.output).toBeUndefined();
  });

  it("drops every unknown delete of a key whose deletions all belong to acknowledged deletes", () => {
    const d = unknownDelete("k", 1);
    const acked: EtcdOperation = { clientId: 0, input: { kind: "delete", key: "k" }, output: { kind: "delete", deleted: 1, revision: 3 }, call: 2, ret: 3 };
    const out = resolveUnknownWrites([put("k", "a", 0, 1, 2), d, acked], history([[2, "PUT", "k", "a"], [3, "DELETE", "k", ""]]), 3);
    expect(out).not.toContain(d);
  });
});
