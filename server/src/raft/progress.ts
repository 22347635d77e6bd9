/**
 * The leader's view of each member: how far its log matches ours (match), what to send next
 * (next), and how to send it (the flow-control state):
 *
 *  - probe:     we do not know where the follower's log ends; send one append per round trip
 *               (or heartbeat), back off on rejection.
 *  - replicate: the follower is caught up; stream appends optimistically, at most
 *               `maxInflightMsgs` unacknowledged ones.
 *  - snapshot:  the follower needs a snapshot which is in flight; send nothing else.
 */
import type { ConfState, NodeId } from "./types.js";
import { invariant } from "./util.js";

export type ProgressState = "probe" | "replicate" | "snapshot";

/**
 * A bounded FIFO of the last indexes of in-flight append messages. Acks free everything up to the
 * acknowledged index.
 */
export class Inflights {
  private readonly buffer: number[];
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    invariant(capacity > 0, "inflights capacity must be positive");
    this.buffer = new Array<number>(capacity).fill(0);
  }

  /** Record an append whose last entry has `index`. Crashes if full (callers check full() first). */
  add(index: number): void {
    invariant(!this.full(), "cannot add into a full inflights");
    let next = this.start + this.count;
    if (next >= this.capacity) next -= this.capacity;
    this.buffer[next] = index;
    this.count++;
  }

  /** Free every in-flight message whose last index is <= `index`. */
  freeLE(index: number): void {
    if (this.count === 0 || index < this.buffer[this.start]!) return;
    let i = 0;
    let idx = this.start;
    for (; i < this.count; i++) {
      if (index < this.buffer[idx]!) break;
      idx++;
      if (idx >= this.capacity) idx -= this.capacity;
    }
    this.count -= i;
    this.start = idx;
    if (this.count === 0) this.start = 0;
  }

  /** Free the oldest in-flight message (used when a heartbeat response shows the follower alive). */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.freeLE(this.buffer[this.start]!);
  }

  full(): boolean {
    return this.count === this.capacity;
  }

  size(): number {
    return this.count;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In snapshot state: index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from recently (reset every election timeout by the check-quorum round). */
  recentActive: boolean;
  /** In probe state: an append was sent and we wait for its answer (or a heartbeat answer). */
  probeSent = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(next: number, maxInflightMsgs: number, isLearner: boolean, recentActive: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflightMsgs);
    this.isLearner = isLearner;
    this.recentActive = recentActive;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** An append up to `n` was acknowledged. Returns false if it tells us nothing new. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** In replicate state: entries up to `n` are on their way. */
  optimisticUpdate(n: number): void {
    this.next = n + 1;
  }

  /**
   * The follower rejected an append at index `rejected`; `matchHint` is the highest index that may
   * still match. Returns false when the rejection is stale (out of order) and must be ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    // Never below match + 1: a reordered, stale rejection may hint below what is known to match.
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Whether the leader must hold back appends to this member for now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe": return this.probeSent;
      case "replicate": return this.inflights.full();
      case "snapshot": return true;
    }
  }

  toString(): string {
    let s = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) s += " learner";
    if (this.probeSent) s += " paused";
    if (this.pendingSnapshot > 0) s += ` pendingSnap=${this.pendingSnapshot}`;
    if (!this.recentActive) s += " inactive";
    if (this.inflights.size() > 0) s += ` inflight=${this.inflights.size()}`;
    if (this.inflights.full()) s += "[full]";
    return s;
  }
}

export type VoteResult = "won" | "lost" | "pending";

function compareIds(a: NodeId, b: NodeId): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Tracks the configuration (voters and learners; one change at a time, so a single majority
 * quorum) and each member's Progress and vote.
 */
export class ProgressTracker {
  readonly voters = new Set<NodeId>();
  readonly learners = new Set<NodeId>();
  readonly progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();
  /** committed()'s working array. */
  private readonly matchScratch: number[] = [];

  constructor(readonly maxInflightMsgs: number) {}

  confState(): ConfState {
    return {
      voters: [...this.voters].sort(compareIds),
      learners: [...this.learners].sort(compareIds),
    };
  }

  private sortedIds: NodeId[] | undefined = undefined;
  private sortedIdsSize = -1;

  /**
   * All member IDs, sorted: a stable iteration order. Cached; callers must not mutate the result.
   * The cache is refreshed when membership changes (see invalidate()).
   */
  ids(): readonly NodeId[] {
    if (this.sortedIds === undefined || this.sortedIdsSize !== this.progress.size) {
      this.sortedIds = [...this.progress.keys()].sort(compareIds);
      this.sortedIdsSize = this.progress.size;
    }
    return this.sortedIds;
  }

  /** Forget cached orderings; call after adding or removing members. */
  invalidate(): void {
    this.sortedIds = undefined;
  }

  voterIds(): NodeId[] {
    return [...this.voters].sort(compareIds);
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  /** The largest index that a majority of voters has matched (0 with no voters). */
  committed(): number {
    if (this.voters.size === 0) return 0;
    // The voters' match indexes, highest first (an insertion sort into a kept array: this runs
    // for every append response the leader takes).
    const matches = this.matchScratch;
    matches.length = 0;
    for (const id of this.voters) {
      const match = this.progress.get(id)?.match ?? 0;
      let i = matches.length;
      matches.push(match);
      while (i > 0 && matches[i - 1]! < match) {
        matches[i] = matches[i - 1]!;
        i--;
      }
      matches[i] = match;
    }
    return matches[this.quorum() - 1]!;
  }

  resetVotes(): void {
    this.votes.clear();
  }

  /** Record `id`'s vote (the first one counts). */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const q = this.quorum();
    const result: VoteResult = granted >= q ? "won" : this.voters.size - rejected < q ? "lost" : "pending";
    return { granted, rejected, result };
  }

  /** Whether a quorum of voters (counting `self`) was recently active. */
  quorumActive(self: NodeId): boolean {
    let active = 0;
    for (const id of this.voters) {
      if (id === self || this.progress.get(id)?.recentActive) active++;
    }
    return active >= this.quorum();
  }

  /** Whether `ids` contains a quorum of voters. */
  hasQuorum(ids: Set<NodeId>): boolean {
    let n = 0;
    for (const id of this.voters) if (ids.has(id)) n++;
    return n >= this.quorum();
  }
}
