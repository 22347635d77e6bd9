/**
 * Proposals and their waiters: a request gets a unique ID, goes into the log as an
 * InternalRaftRequest, and its proposer waits until the apply path triggers that ID with the
 * result, or until its deadline passes ("request timed out"). One timer sweeps every deadline.
 *
 * While the member knows no leader, proposals are held, as etcd's raft node holds them (its
 * propose channel is closed until a leader is known): a write made during an election goes
 * through once the election is over. A held proposal still waiting at its deadline was never in
 * any log and fails with Go's "context deadline exceeded", as etcd's does. One raft refuses while
 * a leader is known (a leadership transfer under way) fails at once with "raft proposal dropped".
 */
import { ByteArena } from "../pkg/byte-arena.js";
import { encodeMessageToArena } from "../pkg/proto-encode.js";
import { InternalRaftRequest } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import type { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";
import { encodeV2Request } from "./apply/entry-codec.js";
import type { ConfChange } from "../raft/types.js";
import { ErrProposalDropped } from "../raft/raw-node.js";
import { IdGenerator } from "../lease/lease-id.js";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import { serverError } from "./errors.js";
import { WaitRegistry } from "./wait-registry.js";
import type { RequestTrace } from "./request-trace.js";

/** What applying an entry produced for its proposer. */
export interface ApplyResult {
  value?: unknown;
  error?: Error;
  /** A compaction's physical deletion, when the proposer asked to wait for it. */
  physical?: Promise<void>;
}

/** The part of the Raft driver proposals go through. */
export interface ProposalSink {
  /** @throws ErrProposalDropped */
  propose(data: Uint8Array): void;
  /** @throws ErrProposalDropped */
  proposeConfChange(cc: ConfChange): void;
  /** Whether the raft core knows a leader now (its own view, ahead of the last Ready's). */
  knowsLeader(): boolean;
}

/** A proposal waiting for a leader: what sends it, and its waiter's deadline. */
interface HeldProposal {
  id: bigint;
  send: () => void;
  atMs: number;
}

export interface ProposerOptions {
  memberId: bigint;
  /** Larger encoded requests are refused ("request is too large"). */
  maxRequestBytes: number;
  /** How long a proposal may wait for apply before "request timed out". */
  requestTimeoutMs: number;
}

export interface ProposerDeps {
  raft: ProposalSink;
  clock: Clock;
}

/**
 * A log entry's request carrying only `fields`. Every other field is absent, which reads (and
 * encodes) as its default: all of them are optional messages except the ID, set here. Copying a
 * full default object (30 fields) per request cost more than the encoding itself.
 */
export function raftRequest(fields: Partial<InternalRaftRequest>): InternalRaftRequest {
  return { header: undefined, ID: 0n, ...fields } as InternalRaftRequest;
}

/** Deadline sweeps per second: a timed-out proposal is answered within this resolution. */
const SWEEP_INTERVAL_MS = 100;

export class Proposer {
  private readonly wait = new WaitRegistry<ApplyResult>();
  private readonly ids: IdGenerator;
  /** Requests proposed here, by their encoded bytes (apply skips decoding them again). */
  private readonly proposed = new WeakMap<Uint8Array, InternalRaftRequest>();
  /** Where proposals' entry bytes are kept (see pkg/byte-arena.ts). */
  private readonly entryArena = new ByteArena(64 * 1024);
  private sweepTimer: TimerHandle | undefined;
  private stoppedWith: Error | undefined;
  /** Proposals waiting for a leader, oldest first (so their deadlines do not decrease). */
  private held: HeldProposal[] = [];
  /** Proposals that failed before an answer came from apply (dropped, timed out, stopped): etcd_server_proposals_failed_total. */
  failed = 0;

  constructor(private readonly options: ProposerOptions, private readonly deps: ProposerDeps) {
    this.ids = new IdGenerator(options.memberId, deps.clock.nowMs());
  }

  start(): void {
    const { clock } = this.deps;
    this.sweepTimer = clock.setInterval(() => {
      const now = clock.nowMs();
      this.expireHeld(now);
      this.wait.expire(now, () => {
        this.failed++;
        return serverError("Timeout");
      });
    }, SWEEP_INTERVAL_MS);
  }

  /**
   * The member learned of a leader: the held proposals go to raft, oldest first. Call on every
   * change of leader (a cheap no-op when nothing is held).
   */
  leaderFound(): void {
    if (this.held.length === 0 || this.stoppedWith) return;
    const held = this.held;
    this.held = [];
    for (let i = 0; i < held.length; i++) {
      if (!this.deps.raft.knowsLeader()) {
        // Lost again meanwhile: the rest waits for the next one.
        this.held = held.slice(i);
        return;
      }
      const h = held[i]!;
      this.submit(h.id, h.send, h.atMs);
      if (this.held.length > 0) {
        // Raft lost the leader as this one went: it is held again, and the rest behind it.
        for (let j = i + 1; j < held.length; j++) this.held.push(held[j]!);
        return;
      }
    }
  }

  /** Held proposals whose deadline passed: never proposed, they fail as etcd's ctx.Err(). */
  private expireHeld(nowMs: number): void {
    let n = 0;
    while (n < this.held.length && this.held[n]!.atMs <= nowMs) n++;
    if (n === 0) return;
    for (const h of this.held.splice(0, n)) {
      this.failed++;
      this.wait.fail(h.id, serverError("ContextDeadline"));
    }
  }

  /** Fails every waiting proposal with `err`; later proposals fail with it at once. */
  stop(err: Error): void {
    this.stoppedWith = err;
    this.held = [];
    if (this.sweepTimer) this.deps.clock.clearInterval(this.sweepTimer);
    this.wait.failAll(err);
  }

  /** Proposals waiting to be applied. */
  get pending(): number {
    return this.wait.size;
  }

  /** A fresh request ID: unique across the cluster (it carries this member's ID), as proposals' are. */
  nextRequestId(): bigint {
    return this.ids.next();
  }

  /** A fresh lease ID (the caller checks the lessor for a collision). */
  nextLeaseId(): bigint {
    return this.ids.nextLeaseId();
  }

  /**
   * Proposes a request and resolves with its apply result; `trace` (tracing on) learns the
   * entry's bytes.
   * @throws ServerError RequestTooLarge, NoLeader, Timeout, Stopped; or the apply error.
   */
  propose(req: InternalRaftRequest, trace?: RequestTrace): Promise<ApplyResult> {
    // Not an async function: this is every write's path, and an async frame (with the one that
    // awaited the result) is garbage per put that outlives a scavenge under load.
    if (this.stoppedWith) {
      this.failed++;
      return Promise.reject(this.stoppedWith);
    }
    const id = this.ids.next();
    req.header = { ID: id, username: req.header?.username ?? "", authRevision: req.header?.authRevision ?? 0n };
    req.ID = id;
    // The bytes travel through raft until the entry is applied (the Raft log packs its own
    // copy): packed into arena chunks they cost no ArrayBuffer of their own per entry.
    let data: Buffer;
    try {
      data = encodeMessageToArena(InternalRaftRequest, req, this.entryArena);
    } catch (err) {
      return Promise.reject(err);
    }
    if (data.length > this.options.maxRequestBytes) return Promise.reject(serverError("RequestTooLarge"));
    const atMs = this.deadline();
    const done = this.wait.register(id, atMs);
    // The entry's bytes travel through raft by reference: apply can reuse this decoded form.
    this.proposed.set(data, req);
    if (trace !== undefined) trace.proposing(data);
    const { raft } = this.deps;
    try {
      raft.propose(data);
    } catch (err) {
      if (err instanceof ErrProposalDropped && !raft.knowsLeader()) this.held.push({ id, send: () => raft.propose(data), atMs });
      else this.dropped(id, err);
    }
    return done;
  }

  /**
   * Proposes a v2 store request as etcd 3.4 does: the bare Request (its ID set here) as the
   * entry's data, answered under that ID.
   * @throws ServerError RequestTooLarge, Timeout, Stopped, NoLeader; or the apply error.
   */
  async proposeV2(req: Request): Promise<ApplyResult> {
    if (this.stoppedWith) throw this.stoppedWith;
    const id = this.ids.next();
    const data = encodeV2Request({ ...req, ID: id });
    if (data.length > this.options.maxRequestBytes) throw serverError("RequestTooLarge");
    const atMs = this.deadline();
    const done = this.wait.register(id, atMs);
    this.submit(id, () => this.deps.raft.propose(data), atMs);
    return done;
  }

  /**
   * Proposes a conf change (its `id` is set here) and resolves with its apply result.
   * @throws ServerError Timeout, Stopped; or the apply error.
   */
  async proposeConfChange(cc: ConfChange): Promise<ApplyResult> {
    if (this.stoppedWith) throw this.stoppedWith;
    const id = this.ids.next();
    cc.id = id;
    const atMs = this.deadline();
    const done = this.wait.register(id, atMs);
    this.submit(id, () => this.deps.raft.proposeConfChange(cc), atMs);
    return done;
  }

  /**
   * The decoded form of an entry proposed here (undefined for entries from other members), handed
   * over once: the entry's bytes stay in the Raft log until it is compacted, and the decoded form
   * (whose keys and values are views into the client's request) must not live that long.
   */
  decodedProposal(data: Uint8Array): InternalRaftRequest | undefined {
    const req = this.proposed.get(data);
    if (req !== undefined) this.proposed.delete(data);
    return req;
  }

  /**
   * Answers the proposer of request `id`, if it waits here: with the result, or rejected with the
   * apply's error.
   */
  trigger(id: bigint, result: ApplyResult): void {
    if (result.error) this.wait.fail(id, result.error);
    else this.wait.trigger(id, result);
  }

  /** A proposal made now: when its waiter gives up ("request timed out", or held: see the top). */
  private deadline(): number {
    return this.deps.clock.nowMs() + this.options.requestTimeoutMs;
  }

  /** Sends a proposal, or holds it while no leader is known (see the top of this file). */
  private submit(id: bigint, send: () => void, atMs: number): void {
    if (!this.deps.raft.knowsLeader()) {
      this.held.push({ id, send, atMs });
      return;
    }
    try {
      send();
    } catch (err) {
      if (err instanceof ErrProposalDropped && !this.deps.raft.knowsLeader()) this.held.push({ id, send, atMs });
      else this.dropped(id, err);
    }
  }

  /** Fails proposal `id`, which raft refused with a leader known ("raft proposal dropped"). */
  private dropped(id: bigint, err: unknown): void {
    this.failed++;
    this.wait.fail(id, err instanceof ErrProposalDropped ? serverError("ProposalDropped") : (err as Error));
  }

}
