/**
 * Leader-side bookkeeping for linearizable reads (ReadIndex, Raft thesis §6.4, "safe" mode).
 *
 * Each request records the commit index at its arrival. Confirmation rounds are batched: at most
 * one heartbeat round is in flight; requests arriving meanwhile wait and share the next round, which
 * starts as soon as the current one is confirmed. A round (tagged by the context of the newest
 * request it covers) is confirmed when a quorum of voters echoes its context back in heartbeat
 * responses; it answers every request queued up to and including its own.
 */
import type { Message, NodeId } from "./types.js";

export interface ReadIndexStatus {
  /** The original request (from: requester, or 0n/self for local). */
  req: Message;
  /** Commit index at the request's arrival. */
  index: number;
  acks: Set<NodeId>;
}

/**
 * The context of a ReadIndex request or response: as etcd's raft carries it, the data of its one
 * entry (`context` is kept as a fallback for messages built without it). Empty when neither.
 */
export function readRequestCtx(m: Message): Uint8Array {
  const first = m.entries[0];
  return first !== undefined ? first.data : m.context;
}

/** Map key for a request context. */
export function ctxKey(ctx: Uint8Array): string {
  return Buffer.from(ctx.buffer, ctx.byteOffset, ctx.byteLength).toString("latin1");
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];
  /** Key of the round whose heartbeats are out, not yet confirmed. */
  private inflightKey: string | undefined = undefined;

  /** Queue a request; duplicates of a pending context are ignored. Returns false for duplicates. */
  addRequest(index: number, req: Message): boolean {
    const key = ctxKey(readRequestCtx(req));
    if (this.pending.has(key)) return false;
    this.pending.set(key, { req, index, acks: new Set() });
    this.queue.push(key);
    return true;
  }

  /**
   * If no round is in flight and requests wait, start one: returns the context to broadcast
   * (the newest waiting request's), else undefined.
   */
  maybeStartRound(): Uint8Array | undefined {
    if (this.inflightKey !== undefined || this.queue.length === 0) return undefined;
    const key = this.queue[this.queue.length - 1]!;
    this.inflightKey = key;
    return readRequestCtx(this.pending.get(key)!.req);
  }

  /** Context of the round in flight (repeated on ordinary heartbeats), if any. */
  inflightCtx(): Uint8Array | undefined {
    if (this.inflightKey === undefined) return undefined;
    const rs = this.pending.get(this.inflightKey);
    return rs === undefined ? undefined : readRequestCtx(rs.req);
  }

  /** Record `from`'s ack of context `ctx`; returns the acks so far (undefined if unknown ctx). */
  recvAck(from: NodeId, ctx: Uint8Array): Set<NodeId> | undefined {
    const rs = this.pending.get(ctxKey(ctx));
    if (rs === undefined) return undefined;
    rs.acks.add(from);
    return rs.acks;
  }

  /** The round tagged `ctx` is confirmed: dequeue and return every request up to it. */
  advance(ctx: Uint8Array): ReadIndexStatus[] {
    const key = ctxKey(ctx);
    const i = this.queue.indexOf(key);
    if (i < 0) return [];
    const done = this.queue.slice(0, i + 1);
    this.queue = this.queue.slice(i + 1);
    const out: ReadIndexStatus[] = [];
    for (const k of done) {
      out.push(this.pending.get(k)!);
      this.pending.delete(k);
      if (k === this.inflightKey) this.inflightKey = undefined;
    }
    if (this.inflightKey !== undefined && !this.pending.has(this.inflightKey)) this.inflightKey = undefined;
    return out;
  }

  pendingCount(): number {
    return this.queue.length;
  }
}
