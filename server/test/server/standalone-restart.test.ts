import { describe, expect, it } from "vitest";
import { decodeConfChange, encodeConfChange } from "../../src/raft/conf-change-codec.js";
import { ConfChangeType, EntryType, type Entry } from "../../src/raft/types.js";
import { committedOnly, membersInLog, standaloneConfChanges } from "../../src/server/standalone-restart.js";

const cc = (index: number, type: ConfChangeType, nodeId: bigint): Entry => ({
  term: 1,
  index,
  type: EntryType.ConfChange,
  data: encodeConfChange({ id: 0n, type, nodeId, context: new Uint8Array(0) }),
});
const normal = (index: number): Entry => ({ term: 1, index, type: EntryType.Normal, data: new Uint8Array(0) });

describe("--force-new-cluster's log rewrite", () => {
  it("members: the configuration plus the conf changes after it, learners included", () => {
    const ids = membersInLog({ voters: [3n, 1n], learners: [7n] }, [cc(5, ConfChangeType.AddLearnerNode, 9n), normal(6), cc(7, ConfChangeType.RemoveNode, 3n), cc(8, ConfChangeType.UpdateNode, 1n)]);
    expect(ids).toEqual([1n, 7n, 9n]);
  });

  it("removes every other member after the commit index, at the current term", () => {
    const out = standaloneConfChanges([1n, 2n, 3n], 2n, 4, 10);
    expect(out.map((e) => [e.index, e.term, e.type])).toEqual([[11, 4, EntryType.ConfChange], [12, 4, EntryType.ConfChange]]);
    expect(out.map((e) => decodeConfChange(e.data)).map((c) => [c.type, c.nodeId])).toEqual([[ConfChangeType.RemoveNode, 1n], [ConfChangeType.RemoveNode, 3n]]);
  });

  it("adds itself first when the configuration lacks it (raft refuses an empty set of voters)", () => {
    const out = standaloneConfChanges([1n], 2n, 1, 5).map((e) => decodeConfChange(e.data));
    expect(out.map((c) => [c.type, c.nodeId])).toEqual([[ConfChangeType.AddNode, 2n], [ConfChangeType.RemoveNode, 1n]]);
    expect(Buffer.from(out[0]!.context).toString()).toBe('{"id":2,"peerURLs":["http://localhost:2380"]}');
  });

  it("drops what is past the commit index", () => {
    expect(committedOnly([normal(4), normal(5), normal(6)], 5).map((e) => e.index)).toEqual([4, 5]);
  });
});
