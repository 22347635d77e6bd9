/**
 * Member administration on the leader (etcd's AddMember, RemoveMember, UpdateMember,
 * PromoteMember, MoveLeader): builds the conf change with etcd's rules (member IDs from peer
 * URLs and the time, a learner promoted only once it has caught up) and proposes it; the answer
 * is the membership once the change has applied.
 */
import { ConfChangeType, type ConfChange, type NodeId } from "../../raft/types.js";
import type { RaftStatus } from "../../raft/raw-node.js";
import { sleep, type Clock } from "../../pkg/clock.js";
import { serverError } from "../errors.js";
import type { Proposer } from "../proposer.js";
import { computeMemberId } from "./member-id.js";
import { encodeMember, type MemberRecord, type Membership } from "./membership.js";

/** A learner is promotable once its log matches this fraction of the leader's. */
const LEARNER_READY_FRACTION = 0.9;

export interface MemberAdminOptions {
  memberId: bigint;
  /** How long moveLeader waits for the transferee to lead. */
  requestTimeoutMs: number;
  /** How often moveLeader looks (one heartbeat). */
  heartbeatMs: number;
}

/** The part of the Raft driver member administration needs. */
export interface MemberAdminRaft {
  readonly leader: NodeId;
  readonly isLeader: boolean;
  status(): RaftStatus;
  transferLeader(transferee: NodeId): void;
}

export interface MemberAdminDeps {
  raft: MemberAdminRaft;
  proposer: Proposer;
  membership: Membership;
  clock: Clock;
  /** Whether the member is stopping (moveLeader gives up). */
  stopped(): boolean;
}

export class MemberAdmin {
  constructor(private readonly options: MemberAdminOptions, private readonly deps: MemberAdminDeps) {}

  /**
   * Adds a member (voter or learner) with etcd's ID rule: SHA-1 of its peer URLs and the current
   * Unix second.
   * @throws ServerError MemberBadURLs, NotLeader, NoLeader, and the conf change's own errors.
   */
  async add(peerUrls: string[], isLearner: boolean): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    if (peerUrls.length === 0 || !peerUrls.every(isPeerUrl)) throw serverError("MemberBadURLs");
    const member: MemberRecord = {
      id: computeMemberId(peerUrls, "", Math.floor(this.deps.clock.nowMs() / 1000)),
      name: "",
      peerUrls: [...peerUrls].sort(),
      clientUrls: [],
      isLearner,
    };
    const members = await this.configure({
      type: isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode,
      nodeId: member.id,
      context: encodeMember(member),
    });
    return { member, members };
  }

  remove(id: bigint): Promise<MemberRecord[]> {
    return this.configure({ type: ConfChangeType.RemoveNode, nodeId: id, context: new Uint8Array(0) });
  }

  update(id: bigint, peerUrls: string[]): Promise<MemberRecord[]> {
    // As in etcd 3.4, an update carries only the ID and fresh raft attributes (the learner flag resets).
    const m: MemberRecord = { id, name: "", peerUrls, clientUrls: [], isLearner: false };
    return this.configure({ type: ConfChangeType.UpdateNode, nodeId: id, context: encodeMember(m) });
  }

  /** Promotes a learner once its log is within 90% of the leader's (etcd's readiness rule). */
  async promote(id: bigint): Promise<MemberRecord[]> {
    this.assertLeader();
    const progress = this.deps.raft.status().progress;
    const learner = progress?.get(id);
    if (learner !== undefined) {
      const leaderMatch = progress!.get(this.options.memberId)?.match ?? 0;
      if (learner.match < leaderMatch * LEARNER_READY_FRACTION) throw serverError("LearnerNotReady");
    }
    const context = encodeMember({ id, name: "", peerUrls: [], clientUrls: [], isLearner: false }, true);
    return this.configure({ type: ConfChangeType.AddNode, nodeId: id, context });
  }

  /**
   * Hands leadership to `transferee` and waits until it leads.
   * @throws ServerError NotLeader, BadLeaderTransferee, TimeoutLeaderTransfer
   */
  async moveLeader(transferee: bigint): Promise<void> {
    const { raft, membership, clock } = this.deps;
    if (!raft.isLeader) throw serverError("NotLeader");
    const m = membership.get(transferee);
    if (m === undefined || m.isLearner) throw serverError("BadLeaderTransferee");
    if (transferee === this.options.memberId) return;
    raft.transferLeader(transferee);
    const deadline = clock.nowMs() + this.options.requestTimeoutMs;
    while (raft.leader !== transferee) {
      if (clock.nowMs() > deadline || this.deps.stopped()) throw serverError("TimeoutLeaderTransfer");
      await sleep(clock, this.options.heartbeatMs);
    }
  }

  private assertLeader(): void {
    if (!this.deps.raft.isLeader) throw serverError(this.deps.raft.leader === 0n ? "NoLeader" : "NotLeader");
  }

  /** Proposes a conf change and resolves with the members after it applied. */
  private async configure(cc: ConfChange): Promise<MemberRecord[]> {
    this.assertLeader();
    return (await this.deps.proposer.proposeConfChange(cc)).value as MemberRecord[];
  }
}

function isPeerUrl(u: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(u);
  } catch {
    return false;
  }
  return ["http:", "https:", "unix:", "unixs:"].includes(parsed.protocol) && parsed.host !== "";
}
