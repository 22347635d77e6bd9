/** Small helpers shared by the Raft core: size accounting, invariant checks, log formatting. */
import type { Entry, Message } from "./types.js";
import { MessageType } from "./types.js";

/** Thrown when an internal Raft invariant is broken. Never caught: a crash beats silent divergence. */
export class RaftInvariantError extends Error {
  override name = "RaftInvariantError";
}

/** Crash (throw RaftInvariantError) when `cond` is false. */
export function invariant(cond: unknown, msg: string | (() => string)): asserts cond {
  if (!cond) throw new RaftInvariantError(typeof msg === "string" ? msg : msg());
}

/** The fixed part of entrySizeBytes. */
export const ENTRY_HEADER_BYTES = 12;

/**
 * Bytes an entry counts for against message-size limits: its payload plus a fixed header estimate
 * (term, index, type), close to its encoded protobuf size.
 */
export function entrySizeBytes(e: Entry): number {
  return e.data.byteLength + ENTRY_HEADER_BYTES;
}

/** Payload bytes only; what counts against the uncommitted-bytes limit (as in etcd). */
export function payloadSizeBytes(e: Entry): number {
  return e.data.byteLength;
}

/**
 * The longest prefix of `entries` whose total size stays within `maxSizeBytes`, but always at
 * least one entry when `entries` is non-empty. Returns `entries` itself when nothing is cut.
 */
export function limitSize(entries: Entry[], maxSizeBytes: number): Entry[] {
  if (entries.length === 0) return entries;
  let size = entrySizeBytes(entries[0]!);
  let n = 1;
  for (; n < entries.length; n++) {
    size += entrySizeBytes(entries[n]!);
    if (size > maxSizeBytes) break;
  }
  return n === entries.length ? entries : entries.slice(0, n);
}

/** Message types that never cross the network: a member produces and consumes them itself. */
export function isLocalMsg(t: MessageType): boolean {
  return (
    t === MessageType.Hup || t === MessageType.Beat || t === MessageType.Unreachable ||
    t === MessageType.SnapStatus || t === MessageType.CheckQuorum
  );
}

/** Responses: messages that answer a request (used to decide which messages need a term bump). */
export function isResponseMsg(t: MessageType): boolean {
  return (
    t === MessageType.AppResp || t === MessageType.VoteResp || t === MessageType.HeartbeatResp ||
    t === MessageType.Unreachable || t === MessageType.PreVoteResp || t === MessageType.ReadIndexResp
  );
}

/** The response type matching a vote request type. */
export function voteRespType(t: MessageType): MessageType {
  if (t === MessageType.Vote) return MessageType.VoteResp;
  if (t === MessageType.PreVote) return MessageType.PreVoteResp;
  throw new RaftInvariantError(`not a vote message: ${MessageType[t]}`);
}

/** Human-readable one-line form of a message, for transcripts and logs. */
export function describeMessage(m: Message, describeData?: (e: Entry) => string): string {
  let s = `${m.from}->${m.to} Msg${MessageType[m.type]} Term:${m.term} Log:${m.logTerm}/${m.index}`;
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.commit !== 0) s += ` Commit:${m.commit}`;
  if (m.entries.length > 0) {
    s += " Entries:[" + m.entries.map((e) => describeEntry(e, describeData)).join(", ") + "]";
  }
  if (m.snapshot !== undefined) {
    const md = m.snapshot.metadata;
    s += ` Snapshot: Index:${md.index} Term:${md.term} ConfState: Voters:[${md.confState.voters.join(" ")}] Learners:[${md.confState.learners.join(" ")}]`;
  }
  return s;
}

const textDecoder = new TextDecoder();

/** `term/index TYPE data`; data shown as text by default. */
export function describeEntry(e: Entry, describeData?: (e: Entry) => string): string {
  const data = describeData ? describeData(e) : textDecoder.decode(e.data);
  const kind = e.type === 0 ? "EntryNormal" : "EntryConfChange";
  return `${e.term}/${e.index} ${kind}${data.length > 0 ? ` ${JSON.stringify(data)}` : ""}`;
}
