/**
 * Proposals and their waiters: a request gets a unique ID, goes into the log as an
 * InternalRaftRequest, and its proposer waits until the apply path triggers that ID with the
 * result, or until its deadline passes ("request timed out"). One timer sweeps every deadline.
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
import { serverError, type ServerErrorCode } from "./errors.js";
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
  /** Proposals that failed before an answer came from apply (dropped, timed out, stopped): etcd_server_proposals_failed_total. */
  failed = 0;

  constructor(private readonly options: ProposerOptions, private readonly deps: ProposerDeps) {
    this.ids = new IdGenerator(options.memberId, deps.clock.nowMs());
  }

  start(): void {
    const { clock } = this.deps;
    this.sweepTimer = clock.setInterval(
      () =>
        this.wait.expire(clock.nowMs(), () => {
          this.failed++;
          return serverError("Timeout");
        }),
      SWEEP_INTERVAL_MS,
    );
  }

  /** Fails every waiting proposal with `err`; later proposals fail with it at once. */
  stop(err: Error): void {
    this.stoppedWith = err;
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
    const done = this.register(id);
    // The entry's bytes travel through raft by reference: apply can reuse this decoded form.
    this.proposed.set(data, req);
    if (trace !== undefined) trace.proposing(data);
    try {
      this.deps.raft.propose(data);
    } catch (err) {
      this.dropped(id, err, "NoLeader");
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
    const done = this.register(id);
    this.submit(id, () => this.deps.raft.propose(data), "NoLeader");
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
    const done = this.register(id);
    this.submit(id, () => this.deps.raft.proposeConfChange(cc), "Timeout");
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

  private register(id: bigint): Promise<ApplyResult> {
    return this.wait.register(id, this.deps.clock.nowMs() + this.options.requestTimeoutMs);
  }

  private submit(id: bigint, send: () => void, droppedAs: ServerErrorCode): void {
    try {
      send();
    } catch (err) {
      this.dropped(id, err, droppedAs);
    }
  }

  /** Fails proposal `id`, which raft refused: ErrProposalDropped becomes `droppedAs`. */
  private dropped(id: bigint, err: unknown, droppedAs: ServerErrorCode): void {
    this.failed++;
    this.wait.fail(id, err instanceof ErrProposalDropped ? serverError(droppedAs) : (err as Error));
  }

}
