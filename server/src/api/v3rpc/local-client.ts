/**
 * The member as its own client, which the Lock and Election services run their recipes through
 * (as etcd's run theirs through an in-process clientv3). Every call meets the gRPC layer's request
 * checks and the member's read and write paths with the caller's RequestContext, and every failure
 * reaches the caller as etcd's in-process client passes it on: gRPC code Unknown with etcd's
 * message (a lease that does not exist is "etcdserver: requested lease not found", code 2).
 *
 * Watches are pulled: `watch()` returns a bounded queue the caller reads with `next()`; while it
 * is full the store's watch hub holds the events back and offers them again later.
 */
import { status as Status } from "@grpc/grpc-js";
import {
  DeleteRangeRequest, RangeRequest, TxnRequest, type LeaseGrantResponse, type RangeResponse, type TxnResponse,
  type DeepPartial, type DeleteRangeResponse, type ResponseHeader,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { WatchMessage, WatchOptions, WatchSink, Watcher } from "../../mvcc/watch-hub.js";
import type { Logger } from "../../pkg/logger.js";
import type { RequestContext } from "../../server/request-context.js";
import { statusOf } from "./errors.js";
import { checkDelete, checkRange, checkTxn, checkWriteOverlaps } from "./validate.js";

/** What the local client needs of the member (EtcdServer has it). */
export interface LocalClientMember {
  range(req: RangeRequest, ctx: RequestContext): Promise<RangeResponse>;
  txn(req: TxnRequest, ctx: RequestContext): Promise<TxnResponse>;
  deleteRange(req: DeleteRangeRequest, ctx: RequestContext): Promise<DeleteRangeResponse>;
  leaseGrant(ttlSeconds: number, requestedId: bigint, ctx: RequestContext): Promise<LeaseGrantResponse>;
  /** A response header at `revision` (0/undefined: the current one). */
  header(revision?: number): ResponseHeader;
  /** Completes the header an apply step left on a response. */
  fillHeader<R extends { header?: ResponseHeader | undefined }>(resp: R): R;
  readonly store: { watch(options: WatchOptions, sink: WatchSink): Watcher };
}

export interface LocalClientOptions {
  /** Most operations one transaction may hold (--max-txn-ops). */
  maxTxnOps: number;
  /** Watch messages one queue holds before the hub must hold back (default 64). */
  watchQueueMessagesMax?: number;
}

/**
 * A failure as the in-process client hands it on (gRPC code Unknown, etcd's text); the error
 * table reads `code` and `details`.
 */
export class LocalClientError extends Error {
  readonly code: number = Status.UNKNOWN;
  constructor(readonly details: string) {
    super(details);
    this.name = "LocalClientError";
  }
}

/** The caller went away (gRPC cancel or deadline, or the gateway's client closed). */
export class CallAbortedError extends Error {
  readonly code: number = Status.CANCELLED;
  readonly details = "context canceled";
  constructor() {
    super("context canceled");
    this.name = "CallAbortedError";
  }
}

/** `err` as the in-process client passes it on; errors etcd has no status for are logged. */
export function asLocalClientError(err: unknown, logger?: Logger): Error {
  if (err instanceof LocalClientError || err instanceof CallAbortedError) return err;
  const [code, message] = statusOf(err);
  if (code === Status.UNKNOWN) logger?.warn("local client request failed", { error: String(err), stack: (err as Error)?.stack });
  return new LocalClientError(message);
}

/** The end of the range holding every key that starts with `prefix` (etcd's prefix range end). */
export function prefixRangeEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i]! += 1;
      return end;
    }
  }
  return Buffer.from([0]); // every byte is 0xff: to the end of the keyspace
}

export class LocalClient {
  private readonly watchQueueMessagesMax: number;

  constructor(
    private readonly options: LocalClientOptions,
    private readonly member: LocalClientMember,
    private readonly logger?: Logger,
  ) {
    this.watchQueueMessagesMax = options.watchQueueMessagesMax ?? 64;
  }

  /** A linearizable range. @throws LocalClientError */
  async range(fields: DeepPartial<RangeRequest>, ctx: RequestContext): Promise<RangeResponse> {
    const req = RangeRequest.fromPartial(fields);
    try {
      checkRange(req);
      return await this.member.range(req, ctx);
    } catch (err) {
      throw asLocalClientError(err, this.logger);
    }
  }

  /** A txn; its header is complete. @throws LocalClientError */
  async txn(fields: DeepPartial<TxnRequest>, ctx: RequestContext): Promise<TxnResponse> {
    const req = TxnRequest.fromPartial(fields);
    try {
      checkTxn(req, this.options.maxTxnOps);
      checkWriteOverlaps(req.success);
      checkWriteOverlaps(req.failure);
      return this.member.fillHeader(await this.member.txn(req, ctx));
    } catch (err) {
      throw asLocalClientError(err, this.logger);
    }
  }

  /** Deletes one key. @throws LocalClientError (an empty key: "etcdserver: key is not provided") */
  async delete(key: Buffer, ctx: RequestContext): Promise<DeleteRangeResponse> {
    const req = DeleteRangeRequest.fromPartial({ key });
    try {
      checkDelete(req);
      return this.member.fillHeader(await this.member.deleteRange(req, ctx));
    } catch (err) {
      throw asLocalClientError(err, this.logger);
    }
  }

  /** Grants a lease with a member-chosen ID; returns the ID. @throws LocalClientError */
  async leaseGrant(ttlSeconds: number, ctx: RequestContext): Promise<bigint> {
    try {
      const resp = await this.member.leaseGrant(ttlSeconds, 0n, ctx);
      return resp.ID;
    } catch (err) {
      throw asLocalClientError(err, this.logger);
    }
  }

  header(revision?: number): ResponseHeader {
    return this.member.header(revision);
  }

  /**
   * Watches `key` (or `[key, end)`) from `startRevision` (inclusive); the caller must `close()`
   * the queue when done with it.
   */
  watch(key: Buffer, end: Buffer | undefined, startRevision: number): WatchQueue {
    const queue = new WatchQueue(this.watchQueueMessagesMax);
    queue.attach(this.member.store.watch({ key, end, startRevision, prevKv: false }, queue));
    return queue;
  }
}

/** A watcher's messages, buffered (at most `messagesMax`) until read. */
export class WatchQueue implements WatchSink {
  private readonly buffered: WatchMessage[] = [];
  private watcher: Watcher | undefined;
  private wake: (() => void) | undefined;
  private closed = false;

  constructor(private readonly messagesMax: number) {}

  attach(watcher: Watcher): void {
    this.watcher = watcher;
    if (this.closed) watcher.cancel();
  }

  send(message: WatchMessage): boolean {
    if (this.closed) return true; // dropped: nobody reads any more
    if (this.buffered.length >= this.messagesMax) return false;
    this.buffered.push(message);
    this.wake?.();
    return true;
  }

  /**
   * The next message (event batches and compaction notices; progress notices are skipped).
   * @throws CallAbortedError when `signal` aborts first.
   */
  async next(signal: AbortSignal): Promise<WatchMessage> {
    for (;;) {
      const wasFull = this.buffered.length >= this.messagesMax;
      const m = this.buffered.shift();
      if (wasFull) this.watcher?.resume();
      if (m !== undefined) {
        if ("events" in m && m.events.length === 0) continue;
        return m;
      }
      if (signal.aborted || this.closed) throw new CallAbortedError();
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        signal.addEventListener("abort", done);
      });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.buffered.length = 0;
    this.watcher?.cancel();
    this.wake?.();
  }
}
