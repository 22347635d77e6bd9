/**
 * Raft's data model: the messages members exchange, the log entries they replicate, and what the
 * core hands its driver in a Ready. Plain data only; no behaviour lives here.
 *
 * Units and widths: terms and log indexes are JS numbers (safe integers; a cluster would need
 * 2^53 entries to overflow). Member IDs are etcd's 64-bit IDs and so are `bigint`; `0n` means
 * "none" (no vote, no leader), exactly as etcd's raft uses 0.
 */

/** A member ID. 0n is reserved for "none". */
export type NodeId = bigint;
export const NONE: NodeId = 0n;

export enum MessageType {
  /** Local: start an election (sent to self by tick or campaign()). */
  Hup = 0,
  /** Local: leader sends heartbeats now. */
  Beat = 1,
  /** Proposal of entries; forwarded to the leader by followers. */
  Prop = 2,
  App = 3,
  AppResp = 4,
  Vote = 5,
  VoteResp = 6,
  Snap = 7,
  Heartbeat = 8,
  HeartbeatResp = 9,
  /** Local: the transport could not reach `from`. */
  Unreachable = 10,
  /** Local: result of sending a snapshot to `from` (reject = failed). */
  SnapStatus = 11,
  /** Local: leader checks it still hears from a quorum. */
  CheckQuorum = 12,
  TransferLeader = 13,
  TimeoutNow = 14,
  ReadIndex = 15,
  ReadIndexResp = 16,
  PreVote = 17,
  PreVoteResp = 18,
}

export enum EntryType {
  Normal = 0,
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque to raft. For ConfChange entries, an encoded ConfChange (see encodeConfChange). */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
  /**
   * Joint configurations (etcd's ConfState fields voters_outgoing, learners_next, auto_leave):
   * etcd 3.4 members never enter one, and neither does this core; carried only so a snapshot's
   * metadata decodes and encodes whole. Absent means empty / false.
   */
  votersOutgoing?: NodeId[];
  learnersNext?: NodeId[];
  autoLeave?: boolean;
}

export enum ConfChangeType {
  AddNode = 0,
  RemoveNode = 1,
  UpdateNode = 2,
  AddLearnerNode = 3,
}

export interface ConfChange {
  /** Request ID the proposer uses to match the applied change to its waiter (etcd's ConfChange.ID); 0n/absent if none. */
  id?: bigint;
  type: ConfChangeType;
  nodeId: NodeId;
  /** Opaque to raft (etcd puts the member's JSON here). */
  context: Uint8Array;
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** Opaque state-machine image. */
  data: Uint8Array;
}

export interface Message {
  type: MessageType;
  to: NodeId;
  from: NodeId;
  term: number;
  /** Term of the entry at `index` (App), or of the candidate's last entry (Vote/PreVote). */
  logTerm: number;
  index: number;
  entries: Entry[];
  commit: number;
  snapshot?: Snapshot;
  reject: boolean;
  rejectHint: number;
  /** Opaque request context (ReadIndex ids, campaign-transfer marker). */
  context: Uint8Array;
}

/** Volatile state that is useful for logging and for the driver; need not be persisted. */
export enum StateRole {
  Follower = 0,
  Candidate = 1,
  Leader = 2,
  PreCandidate = 3,
}

export interface SoftState {
  lead: NodeId;
  role: StateRole;
}

/** Answer to a readIndex(ctx) request: reads at or after `index` are linearizable. */
export interface ReadState {
  index: number;
  requestCtx: Uint8Array;
}

/**
 * What the driver must do next, in this order (see the driver in server/src/server/):
 *  1. persist `hardState`, `entries` (and `snapshot`) — fsync when `mustSync`;
 *  2. send `messages`;
 *  3. apply `snapshot`, then `committedEntries`;
 *  4. call `advance()`.
 * Arrays are owned by the driver after ready() returns.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  readStates: ReadState[];
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  mustSync: boolean;
}

export function emptyMessage(type: MessageType, to: NodeId, from: NodeId): Message {
  return {
    type, to, from, term: 0, logTerm: 0, index: 0, entries: NO_ENTRIES, commit: 0,
    reject: false, rejectHint: 0, context: NO_CONTEXT,
  };
}

/**
 * The entries of a message without any: one frozen array, shared (most messages carry none).
 * A message's entries are replaced, never appended to in place.
 */
export const NO_ENTRIES: Entry[] = Object.freeze([]) as unknown as Entry[];

/** The context of a message without one (no bytes: shared, nothing can write into it). */
const NO_CONTEXT = new Uint8Array(0);
