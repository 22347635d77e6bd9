/**
 * The member as the peer transport sees it (etcd's rafthttp.Raft): the receiving end of the
 * member-to-member protocol. The member (EtcdServer) implements PeerHandler; a transport (the
 * peer HTTP transport, or the simulation's in-memory network) calls it. The sending end is
 * PeerTransport (raft-node.ts), which the member calls.
 *
 * Snapshots travel as merged snapshots (etcd's snap.Message): a raft MsgSnap together with the
 * leader's whole backend as an image, whose consistent index is at or above the snapshot's index.
 *   leader    the Ready's MsgSnap → EtcdServer.sendSnapshot moves it to the applied state and
 *             pairs it with the backend image → PeerTransport.sendSnapshot → the transport
 *             delivers it, then calls the leader's PeerHandler.reportSnapshot(to, ok), which
 *             reaches raft
 *   follower  the transport has received the whole merged snapshot → PeerHandler.receiveSnapshot
 *             keeps the image and steps the message into raft → raft hands the snapshot to the
 *             apply path (Ready.snapshot) → the apply loop installs the image and reloads every
 *             view kept beside the backend (apply/apply-loop.ts)
 */
import type { BackendImage } from "../mvcc/backend/backend.js";
import type { Message, NodeId } from "../raft/types.js";

/** A raft snapshot message with the backend state it stands for (etcd's merged snapshot). */
export interface MergedSnapshot {
  /** A MsgSnap: its snapshot's metadata carries the index, term and configuration. */
  message: Message;
  /** The sender's backend, as of a consistent index at or above the snapshot's index. */
  image: BackendImage;
}

export type PeerRefusal =
  /** The sender was removed from the cluster (etcd answers 403 so that it learns it). */
  | "MemberRemoved"
  /** A MsgSnap came without its image (through process), or receiveSnapshot got no MsgSnap. */
  | "SnapshotMisrouted"
  /** Too many received images wait for their snapshot to be applied. */
  | "SnapshotBacklogFull";

/** The member refused a peer's message; the transport answers the sender with it. */
export class PeerMessageRefusedError extends Error {
  constructor(readonly code: PeerRefusal, detail: string) {
    super(detail);
    this.name = "PeerMessageRefusedError";
  }
}

export interface PeerHandler {
  /**
   * Delivers a message from a peer (any type but MsgSnap) to raft.
   * @throws PeerMessageRefusedError MemberRemoved (the sender was removed: its transport should
   *   tell it), SnapshotMisrouted (a MsgSnap: those come with their image via receiveSnapshot).
   */
  process(message: Message): void;
  /**
   * Delivers a merged snapshot the transport has received whole: keeps its image until the apply
   * path installs it, and steps the message into raft. The image must stay readable until then;
   * images raft never hands back (an older or an ignored snapshot) are dropped unread.
   * @throws PeerMessageRefusedError MemberRemoved, SnapshotMisrouted (not a MsgSnap carrying a
   *   snapshot), SnapshotBacklogFull; the sender then reports the snapshot as failed.
   */
  receiveSnapshot(merged: MergedSnapshot): void;
  /** Whether `id` was removed from the cluster (the transport refuses its traffic). */
  isIdRemoved(id: NodeId): boolean;
  /**
   * A peer answered that this member was removed from the cluster (etcd's errMemberRemoved, a
   * critical error): the member stops. Called at most once per peer link; may repeat across peers.
   */
  reportRemoved(): void;
  /** The transport could not reach `id`: raft probes it again. */
  reportUnreachable(id: NodeId): void;
  /**
   * How a snapshot sent to `id` with PeerTransport.sendSnapshot ended: the transport calls it
   * exactly once per merged snapshot, `ok` when the receiver took it whole.
   */
  reportSnapshot(id: NodeId, ok: boolean): void;
}

/**
 * The name under which a merged snapshot's database is kept in the member's snap directory, by
 * the peer handler that receives it and the member that installs it (etcd's `%016x.snap.db`).
 */
export function snapshotDatabaseFileName(index: number): string {
  return `${index.toString(16).padStart(16, "0")}.snap.db`;
}

/** The snapshot index a kept database's name stands for, or undefined for any other name. */
export function parseSnapshotDatabaseFileName(name: string): number | undefined {
  const m = /^([0-9a-f]{16})\.snap\.db$/.exec(name);
  return m === null ? undefined : parseInt(m[1]!, 16);
}
