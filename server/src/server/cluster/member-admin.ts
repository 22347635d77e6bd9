/**
 * Member administration (etcd's AddMember, RemoveMember, UpdateMember, PromoteMember,
 * MoveLeader): builds the conf change with etcd's rules (member IDs from peer URLs and the time,
 * a learner promoted only once it has caught up) and proposes it; the answer is the membership
 * once the change has applied. Any member may propose a change (raft forwards it to the leader);
 * a promotion needs the leader's view of the learner's log, so a follower forwards it over the
 * peer port (leader-forward.ts).
 *
 * Strict reconfiguration (--strict-reconfig-check, on by default), as etcd 3.4 checks it:
 *   add voter     enough started voters for a quorum that counts the new member, and this member
 *                 connected to every voter for at least HEALTH_INTERVAL_MS (else "unhealthy
 *                 cluster": the change would stall an active quorum);
 *   remove voter  enough started voters for a quorum without it; removing a peer this member is
 *                 not connected to is always allowed, otherwise the connected voters minus the
 *                 removed one must still be a quorum;
 *   promote       enough started voters for a quorum that counts the learner as started.
 * A member is "started" once it has published its name.
 */
import { ConfChangeType, type ConfChange, type NodeId } from "../../raft/types.js";
import type { RaftStatus } from "../../raft/raw-node.js";
import { sleep, type Clock } from "../../pkg/clock.js";
import { serverError } from "../errors.js";
import { forwardToLeader, isFinalPromoteError, type LeaderClient } from "../leader-forward.js";
import type { Proposer } from "../proposer.js";
import { computeMemberId } from "./member-id.js";
import { encodeMember, type MemberRecord, type Membership } from "./membership.js";

/** A learner is promotable once its log matches this fraction of the leader's. */
const LEARNER_READY_FRACTION = 0.9;

/** How long a peer connection must have been up to count as healthy (etcd's HealthInterval). */
export const HEALTH_INTERVAL_MS = 5000;

/** What the peer transport knows of its connections (etcd's Transporter.ActiveSince). */
export interface PeerActivity {
  /** When the connection to `id` became active (ms on the member's clock), undefined while it is down. */
  activeSince(id: bigint): number | undefined;
}

export interface MemberAdminOptions {
  memberId: bigint;
  /** How long moveLeader waits for the transferee to lead. */
  requestTimeoutMs: number;
  /** How often moveLeader looks (one heartbeat). */
  heartbeatMs: number;
  /** Refuse changes that would endanger an active quorum (--strict-reconfig-check; default true). */
  strictReconfigCheck?: boolean;
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
  /** The peer connections; absent (a simulated network), every peer counts as long connected. */
  activity?: PeerActivity;
  /** Forwards a promotion to the leader; absent, a follower answers NotLeader. */
  leaderClient?: LeaderClient;
}

export class MemberAdmin {
  constructor(private readonly options: MemberAdminOptions, private readonly deps: MemberAdminDeps) {}

  /**
   * Adds a member (voter or learner) with etcd's ID rule: SHA-1 of its peer URLs and the current
   * Unix second.
   * @throws ServerError MemberBadURLs, NotEnoughStartedMembers, Unhealthy, and the proposal's and
   *   the conf change's own errors.
   */
  async add(peerUrls: string[], isLearner: boolean): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    if (peerUrls.length === 0 || !peerUrls.every(isPeerUrl)) throw serverError("MemberBadURLs");
    if (this.strict && !isLearner) {
      if (!this.readyToAddVoter()) throw serverError("NotEnoughStartedMembers");
      if (!this.connectedToAllVoters()) throw serverError("Unhealthy");
    }
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

  /** @throws ServerError NotEnoughStartedMembers, Unhealthy, and the proposal's and conf change's errors. */
  async remove(id: bigint): Promise<MemberRecord[]> {
    if (this.strict) this.checkRemove(id);
    return this.configure({ type: ConfChangeType.RemoveNode, nodeId: id, context: new Uint8Array(0) });
  }

  update(id: bigint, peerUrls: string[]): Promise<MemberRecord[]> {
    // As in etcd 3.4, an update carries only the ID and fresh raft attributes (the learner flag resets).
    const m: MemberRecord = { id, name: "", peerUrls, clientUrls: [], isLearner: false };
    return this.configure({ type: ConfChangeType.UpdateNode, nodeId: id, context: encodeMember(m) });
  }

  /**
   * Promotes a learner once its log is within 90% of the leader's (etcd's readiness rule). Only
   * the leader knows the learner's log: a follower forwards the request to it.
   * @throws ServerError LearnerNotReady, MemberNotFound, MemberNotLearner, NotEnoughStartedMembers,
   *   NotLeader (a follower without a leader client), Timeout, Stopped.
   */
  async promote(id: bigint): Promise<MemberRecord[]> {
    if (!this.deps.raft.isLeader) {
      const client = this.deps.leaderClient;
      if (client === undefined) throw serverError(this.deps.raft.leader === 0n ? "NoLeader" : "NotLeader");
      return forwardToLeader(
        {
          clock: this.deps.clock,
          leader: () => this.deps.raft.leader,
          member: (m) => this.deps.membership.get(m),
          stopped: this.deps.stopped,
        },
        this.options.requestTimeoutMs,
        (url, remainingMs) => client.promoteMember(url, id, remainingMs),
        isFinalPromoteError,
      );
    }
    const progress = this.deps.raft.status().progress;
    const learner = progress?.get(id);
    if (learner !== undefined) {
      const leaderMatch = progress!.get(this.options.memberId)?.match ?? 0;
      if (learner.match < leaderMatch * LEARNER_READY_FRACTION) throw serverError("LearnerNotReady");
    }
    if (this.strict && !this.readyToPromote()) throw serverError("NotEnoughStartedMembers");
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

  /**
   * Before a graceful stop, a leader hands leadership to the voter it has been connected to the
   * longest (etcd's TransferLeadership); a follower or a lone voter has nothing to hand over.
   * @throws ServerError Unhealthy (no voter connected), TimeoutLeaderTransfer.
   */
  async transferLeadership(): Promise<bigint | undefined> {
    if (!this.deps.raft.isLeader) return undefined;
    const voters = this.voters();
    if (voters.length < 2) return undefined;
    let transferee: bigint | undefined;
    let oldest = Infinity;
    for (const m of voters) {
      if (m.id === this.options.memberId) continue;
      const t = this.activeSince(m.id);
      if (t !== undefined && t < oldest) {
        oldest = t;
        transferee = m.id;
      }
    }
    if (transferee === undefined) throw serverError("Unhealthy");
    await this.moveLeader(transferee);
    return transferee;
  }

  /** Proposes a conf change (raft forwards it from a follower) and resolves with the members after it applied. */
  private async configure(cc: ConfChange): Promise<MemberRecord[]> {
    return (await this.deps.proposer.proposeConfChange(cc)).value as MemberRecord[];
  }

  private get strict(): boolean {
    return this.options.strictReconfigCheck ?? true;
  }

  private voters(): MemberRecord[] {
    return this.deps.membership.list().filter((m) => !m.isLearner);
  }

  /** The voters other than `except`, and how many of them have started. */
  private votersStarted(except?: bigint): { members: number; started: number } {
    let members = 0;
    let started = 0;
    for (const m of this.voters()) {
      if (m.id === except) continue;
      if (m.name !== "") started++;
      members++;
    }
    return { members, started };
  }

  /** A quorum of the voters plus the new one are started (a lone started voter may add a second). */
  private readyToAddVoter(): boolean {
    const { members, started } = this.votersStarted();
    if (started === 1 && members + 1 === 2) return true;
    return started >= quorum(members + 1);
  }

  /** A quorum of the voters, the learner counted as one of them and started. */
  private readyToPromote(): boolean {
    const { members, started } = this.votersStarted();
    return started + 1 >= quorum(members + 1);
  }

  private checkRemove(id: bigint): void {
    const target = this.deps.membership.get(id);
    if (target?.isLearner) return;
    const { members, started } = this.votersStarted(id);
    if (started < quorum(members)) throw serverError("NotEnoughStartedMembers");
    // A peer this member cannot reach is not part of the active quorum: removing it is safe.
    if (id !== this.options.memberId && this.activeSince(id) === undefined) return;
    // The connected voters without the removed one must still be a quorum of the voters left.
    const voters = this.voters();
    if (this.connectedSince(voters) - 1 < quorum(voters.length - 1)) throw serverError("Unhealthy");
  }

  private connectedToAllVoters(): boolean {
    const voters = this.voters();
    return this.connectedSince(voters) === voters.length;
  }

  /**
   * When the connection to `id` became active; undefined while down. Without a transport every
   * member counts as connected from the start and an unknown ID as never connected.
   */
  private activeSince(id: bigint): number | undefined {
    if (this.deps.activity !== undefined) return this.deps.activity.activeSince(id);
    return this.deps.membership.get(id) === undefined ? undefined : -Infinity;
  }

  /** Voters this member has been connected to for HEALTH_INTERVAL_MS, itself included. */
  private connectedSince(members: MemberRecord[]): number {
    const since = this.deps.clock.nowMs() - HEALTH_INTERVAL_MS;
    let connected = 0;
    for (const m of members) {
      if (m.id === this.options.memberId) {
        connected++;
        continue;
      }
      const t = this.activeSince(m.id);
      if (t !== undefined && t < since) connected++;
    }
    return connected;
  }
}

function quorum(members: number): number {
  return Math.floor(members / 2) + 1;
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
