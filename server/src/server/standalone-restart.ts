/**
 * --force-new-cluster: a member restarting from its WAL comes back as the only member of its
 * cluster, with its data, its member ID and the cluster ID. The way out of a permanent loss of
 * quorum when one member's data survives.
 *
 * What the restart does to the recovered log (pure functions here; bootstrap.ts persists them):
 *   1. entries past the commit index are dropped: nobody else can confirm them;
 *   2. the members raft knows of (the configuration it resumes from plus the conf changes in the
 *      kept entries) are read, and conf-change entries are appended at the current term after the
 *      commit index: an AddNode of this member when the configuration lacks it (raft refuses an
 *      empty set of voters, so it comes first), then a RemoveNode of every other member, voters
 *      and learners alike;
 *   3. the commit index moves to the last appended entry, so the apply path applies the removals
 *      as any committed conf change (membership, transport and raft follow) and the member, alone,
 *      elects itself.
 * Without a WAL the flag changes nothing: a new or joining member starts as it would anyway.
 */
import { decodeConfChange, encodeConfChange } from "../raft/conf-change-codec.js";
import { ConfChangeType, EntryType, type ConfState, type Entry, type NodeId } from "../raft/types.js";
import { encodeMember } from "./cluster/membership.js";

/**
 * The members raft knows of after `entries` are applied on top of `confState`, sorted.
 * @throws ErrConfChangeDecode on a conf-change entry that does not decode.
 */
export function membersInLog(confState: ConfState, entries: readonly Entry[]): NodeId[] {
  const ids = new Set<NodeId>([...confState.voters, ...confState.learners]);
  for (const e of entries) {
    if (e.type !== EntryType.ConfChange) continue;
    const cc = decodeConfChange(e.data);
    if (cc.type === ConfChangeType.AddNode || cc.type === ConfChangeType.AddLearnerNode) ids.add(cc.nodeId);
    else if (cc.type === ConfChangeType.RemoveNode) ids.delete(cc.nodeId);
  }
  return [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The conf-change entries that leave `self` alone, at `term`, from index `commit + 1` on: an
 * AddNode of `self` first when `ids` lacks it (with the placeholder peer URL etcd uses, which
 * the member's attributes and a later `member update` replace), then a RemoveNode per other ID.
 */
export function standaloneConfChanges(ids: readonly NodeId[], self: NodeId, term: number, commit: number): Entry[] {
  const out: Entry[] = [];
  let index = commit + 1;
  const push = (type: ConfChangeType, nodeId: NodeId, context: Uint8Array) =>
    out.push({ term, index: index++, type: EntryType.ConfChange, data: encodeConfChange({ id: 0n, type, nodeId, context }) });
  if (!ids.includes(self)) {
    push(ConfChangeType.AddNode, self, encodeMember({ id: self, name: "", peerUrls: ["http://localhost:2380"], clientUrls: [], isLearner: false }));
  }
  for (const id of ids) if (id !== self) push(ConfChangeType.RemoveNode, id, new Uint8Array(0));
  return out;
}

/** Entries up to `commit` (the rest were never confirmed by a quorum and are dropped). */
export function committedOnly(entries: readonly Entry[], commit: number): Entry[] {
  return entries.filter((e) => e.index <= commit);
}
