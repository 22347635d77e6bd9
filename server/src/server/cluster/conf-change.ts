/**
 * Conf-change entries: etcd's validation against the membership (ValidateConfigurationChange),
 * and their effects. A valid change reconfigures raft and the membership in the entry's write
 * session, with raft's resulting configuration (ConfState) stored next to them so that a restart
 * resumes from it; a rejected change is applied as a no-op and its proposer gets the error.
 */
import { ConfChangeType, type ConfChange, type ConfState } from "../../raft/types.js";
import { serverError, type ServerError } from "../errors.js";
import type { WriteSession } from "../store-port.js";
import { decodeMember, type MemberRecord, type Membership } from "./membership.js";

/** etcd 3.4 allows one learner at a time. */
export const MAX_LEARNERS = 1;

/** The backend "meta" key raft's configuration is stored under. */
export const CONF_STATE_KEY = Buffer.from("confState");

export function encodeConfState(cs: ConfState): Buffer {
  return Buffer.from(JSON.stringify({ voters: cs.voters.map((v) => v.toString(16)), learners: cs.learners.map((v) => v.toString(16)) }));
}

export function decodeConfState(b: Buffer): ConfState {
  const j = JSON.parse(b.toString()) as { voters: string[]; learners: string[] };
  return { voters: j.voters.map((v) => BigInt("0x" + v)), learners: j.learners.map((v) => BigInt("0x" + v)) };
}

/**
 * The member a conf change carries in its context: etcd's Member JSON (or ConfigChangeContext);
 * none for a removal or a promotion (`"isPromote":true`, or an empty context as written before).
 */
export function memberOfConfChange(cc: ConfChange): MemberRecord | undefined {
  if (cc.context.length === 0 || cc.type === ConfChangeType.RemoveNode) return undefined;
  const { isPromote, ...m } = decodeMember(cc.context);
  return isPromote ? undefined : m;
}

/**
 * Validates a conf change against the membership.
 * @returns the error for the proposer, or undefined when the change is valid.
 */
export function validateConfChange(membership: Membership, cc: ConfChange, m: MemberRecord | undefined): ServerError | undefined {
  const existing = membership.get(cc.nodeId);
  switch (cc.type) {
    case ConfChangeType.AddNode:
    case ConfChangeType.AddLearnerNode: {
      if (membership.isRemoved(cc.nodeId)) return serverError("MemberNotFound");
      if (existing) {
        // AddNode for an existing learner is its promotion.
        if (cc.type === ConfChangeType.AddNode && existing.isLearner && m === undefined) return undefined;
        if (cc.type === ConfChangeType.AddNode && m === undefined) return serverError("MemberNotLearner");
        return serverError("MemberExist");
      }
      if (m === undefined) return serverError("MemberNotFound");
      const urls = new Set(m.peerUrls);
      if (membership.list().some((o) => o.peerUrls.some((u) => urls.has(u)))) return serverError("PeerURLExist");
      if (cc.type === ConfChangeType.AddLearnerNode && membership.list().filter((o) => o.isLearner).length >= MAX_LEARNERS) {
        return serverError("TooManyLearners");
      }
      return undefined;
    }
    case ConfChangeType.RemoveNode:
      if (membership.isRemoved(cc.nodeId) || !existing) return serverError("MemberNotFound");
      return undefined;
    case ConfChangeType.UpdateNode: {
      if (membership.isRemoved(cc.nodeId) || !existing) return serverError("MemberNotFound");
      const urls = new Set(m?.peerUrls ?? []);
      if (membership.list().some((o) => o.id !== cc.nodeId && o.peerUrls.some((u) => urls.has(u)))) return serverError("PeerURLExist");
      return undefined;
    }
  }
  return undefined;
}

/**
 * Applies a validated conf change to the membership, staging the records and raft's new
 * configuration `confState` into `w`.
 */
export function applyConfChangeToMembership(membership: Membership, cc: ConfChange, m: MemberRecord | undefined, confState: ConfState, w: WriteSession): void {
  switch (cc.type) {
    case ConfChangeType.AddNode:
    case ConfChangeType.AddLearnerNode:
      if (m === undefined) membership.promote(cc.nodeId, w);
      else membership.add({ ...m, isLearner: cc.type === ConfChangeType.AddLearnerNode }, w);
      break;
    case ConfChangeType.RemoveNode:
      membership.remove(cc.nodeId, w);
      break;
    case ConfChangeType.UpdateNode:
      if (m !== undefined) membership.setRaftAttributes(cc.nodeId, m.peerUrls, m.isLearner, w);
      break;
  }
  w.stage("meta", CONF_STATE_KEY, encodeConfState(confState));
}
