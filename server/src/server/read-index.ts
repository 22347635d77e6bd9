/**
 * Linearizable reads (etcd's linearizableReadNotify): a read waits for a ReadIndex round, which
 * confirms with a quorum that this member's view of the commit index is current, and then for
 * the apply path to reach that index. Every read that arrives while a round is in flight shares
 * the next round, so a burst of reads costs one round.
 *
 * A round's context is a request ID unique across the cluster (as etcd's): the leader keeps the
 * ReadIndex requests of all members by context, and two members asking with the same context at
 * once would leave one of them unanswered until its round timed out.
 */
import type { NodeId, ReadState } from "../raft/types.js";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import { serverError } from "./errors.js";

/** The part of the Raft driver reads go through. */
export interface ReadIndexSink {
  readIndex(requestCtx: Uint8Array): void;
  readonly leader: NodeId;
}

export interface LinearizableReadsOptions {
  /** A round not answered within this fails its readers ("request timed out", as etcd 3.4 with or without a leader). */
  requestTimeoutMs: number;
}

export interface LinearizableReadsDeps {
  raft: ReadIndexSink;
  /** Resolves once the apply path has applied `index`. */
  waitApplied(index: number): Promise<void>;
  /** A request ID no other member uses (the proposer's), as a round's context. */
  nextRequestId(): bigint;
  clock: Clock;
}

interface Reader {
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Round {
  ctx: string;
  readers: Reader[];
  timer: TimerHandle;
}

export class LinearizableReads {
  private readonly pending: Reader[] = [];
  private inFlight: Round | undefined;
  private stoppedWith: Error | undefined;
  /** Rounds not answered in time (etcd_server_slow_read_indexes_total). */
  slowRounds = 0;
  /** Reads those rounds failed (etcd_server_read_indexes_failed_total). */
  failedReads = 0;

  constructor(private readonly options: LinearizableReadsOptions, private readonly deps: LinearizableReadsDeps) {}

  /** Resolves when a read served now would be linearizable. @throws ServerError Timeout/Stopped */
  notify(): Promise<void> {
    if (this.stoppedWith) return Promise.reject(this.stoppedWith);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ resolve, reject });
      if (this.inFlight === undefined) this.startRound();
    });
  }

  /** The driver's answers to readIndex requests. */
  onReadStates(states: ReadState[]): void {
    for (const rs of states) {
      const round = this.inFlight;
      if (round === undefined || round.ctx !== Buffer.from(rs.requestCtx).toString("hex")) continue;
      this.deps.clock.clearTimeout(round.timer);
      this.inFlight = undefined;
      void this.deps.waitApplied(rs.index).then(() => {
        for (const r of round.readers) r.resolve();
      });
      this.startRound();
    }
  }

  /** Fails every waiting reader with `err`; later reads fail with it at once. */
  stop(err: Error): void {
    this.stoppedWith = err;
    for (const r of this.pending.splice(0)) r.reject(err);
    if (this.inFlight) {
      this.deps.clock.clearTimeout(this.inFlight.timer);
      for (const r of this.inFlight.readers) r.reject(err);
      this.inFlight = undefined;
    }
  }

  private startRound(): void {
    if (this.pending.length === 0 || this.stoppedWith) return;
    const readers = this.pending.splice(0);
    const ctxBuf = Buffer.alloc(8);
    ctxBuf.writeBigUInt64BE(BigInt.asUintN(64, this.deps.nextRequestId()));
    const ctx = ctxBuf.toString("hex");
    const timer = this.deps.clock.setTimeout(() => {
      if (this.inFlight?.ctx !== ctx) return;
      this.inFlight = undefined;
      // etcd 3.4 answers "request timed out" whether or not a leader is known: a member without
      // one drops the read-index request, and the round simply times out.
      const err = serverError("Timeout");
      this.slowRounds++;
      this.failedReads += readers.length;
      for (const r of readers) r.reject(err);
      this.startRound();
    }, this.options.requestTimeoutMs);
    this.inFlight = { ctx, readers, timer };
    this.deps.raft.readIndex(ctxBuf);
  }
}
