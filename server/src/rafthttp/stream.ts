/**
 * The long-lived streams between two members (etcd's streamWriter and streamReader). Each
 * member opens two streams to each peer, `GET /raft/stream/msgapp/<its ID>` and
 * `GET /raft/stream/message/<its ID>`, and reads what the peer writes down them; the peer
 * keeps the answers open as its stream writers to this member. So every member writes to a
 * peer on the streams the peer opened, and reads from the streams it opened itself.
 *
 *   msgapp   msgappv2 framing (msgapp-v2.ts): the leader's MsgApps, compact when consecutive
 *   message  8-byte length-prefixed messages (message-stream.ts): everything else
 *
 * A writer sends a link heartbeat every 5/3 s so that the reader, which drops a stream silent
 * for 5 s, keeps it. A reader that lost its stream (or never got one) dials again 100 ms later,
 * on the next URL after a failure; one answered 410 Gone (this member was removed from the
 * cluster) reports it to the member (PeerHandler.reportRemoved) and stops dialling. A writer holds at most 4096 messages; the peer's send drops
 * messages beyond that. The frames a writer encodes in one turn go to the response in one write.
 *
 * A writer writes its frames to the answer's socket itself, as chunks of HTTP/1.1's chunked
 * transfer coding (what node:http and Go's server send for an answer without a length): through
 * node:http every write cost a chunk-size string, three buffers and a corked writev, about twice
 * what the message cost to encode, and a follower writes two or three messages per put.
 */
import type http from "node:http";
import type { Socket } from "node:net";
import { MessageType, type Message, type NodeId } from "../raft/types.js";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import { PeerMessageRefusedError, type PeerHandler } from "../server/transport-port.js";
import { encodeMessageFrame, MessageStreamDecoder } from "./message-stream.js";
import { isLinkHeartbeat, linkHeartbeatMessage, MsgAppV2Decoder, MsgAppV2Encoder } from "./msgapp-v2.js";
import type { PeerHttpClient } from "./peer-http-client.js";
import type { StreamAnswer } from "./stream-dial.js";
import { ERR_CLUSTER_ID_MISMATCH, ERR_INCOMPATIBLE_VERSION, idHex, RemovedFromClusterError } from "./peer-protocol.js";
import type { PeerStatus } from "./peer-status.js";
import type { UrlPicker } from "./url-picker.js";

export type StreamType = "msgapp" | "message";

/** Messages a stream writer holds (etcd's streamBufSize). */
export const STREAM_BUFFER = 4096;
/** A stream silent for this long is dropped (etcd's ConnReadTimeout). */
export const STREAM_READ_TIMEOUT_MS = 5000;
const HEARTBEAT_INTERVAL_MS = Math.floor(STREAM_READ_TIMEOUT_MS / 3);
/** Wait between two dial attempts of a stream reader. */
export const STREAM_REDIAL_MS = 100;

interface Conn {
  res: http.ServerResponse;
  /** The answer's socket, written directly once its head is out. */
  socket: Socket;
  /** Frames go out as HTTP/1.1 chunks (false for an HTTP/1.0 request: the bytes as they are). */
  chunked: boolean;
  encode: (m: Message) => Uint8Array;
  blocked: boolean;
  heartbeat: TimerHandle;
  /** Frames encoded this turn, written to the socket together (see writePending). */
  pending: Uint8Array[];
  pendingBytes: number;
  /** A writePending is due at the next tick. */
  scheduled: boolean;
  /** writePending of this stream, for process.nextTick (one closure per stream, not per write). */
  writeTick: () => void;
}

export interface StreamWriterDeps {
  status: PeerStatus;
  clock: Clock;
  logger: Logger;
}

/** The writing end of one stream to a peer: the answer to the GET the peer sent us. */
export class StreamWriter {
  private readonly queue: Message[] = [];
  private conn: Conn | undefined;
  private stopped = false;

  constructor(readonly type: StreamType, private readonly peerHex: string, private readonly deps: StreamWriterDeps) {}

  /** Whether a stream is attached (messages put here go out now). */
  get working(): boolean {
    return this.conn !== undefined;
  }

  /**
   * Takes over the answer of a stream request the peer sent (its head already written, with
   * flushHeaders); a previous stream of this type is closed.
   */
  attach(res: http.ServerResponse): void {
    const socket = res.socket;
    if (this.stopped || socket == null || !res.headersSent) {
      res.end();
      return;
    }
    this.detach("replaced by a new stream");
    const encoder = this.type === "msgapp" ? new MsgAppV2Encoder() : undefined;
    const conn: Conn = {
      res,
      socket,
      // node:http chose the answer's framing when it wrote the head.
      chunked: (res as unknown as { chunkedEncoding: boolean }).chunkedEncoding === true,
      encode: encoder ? (m) => encoder.encode(m) : encodeMessageFrame,
      blocked: false,
      heartbeat: this.deps.clock.setInterval(() => this.write(conn, linkHeartbeatMessage()), HEARTBEAT_INTERVAL_MS, { unref: true }),
      pending: [],
      pendingBytes: 0,
      scheduled: false,
      writeTick: () => this.writePending(conn),
    };
    this.conn = conn;
    res.on("close", () => {
      if (this.conn === conn) this.detach("the peer closed the stream");
    });
    socket.on("drain", () => {
      if (this.conn !== conn) return;
      conn.blocked = false;
      this.flush();
    });
    this.deps.status.activate();
    this.deps.logger.info("established stream writer", { "stream-type": this.type, "peer-id": this.peerHex });
    this.flush();
  }

  /** Queues `m`; false (dropped) when 4096 are waiting. */
  send(m: Message): boolean {
    if (this.stopped || this.queue.length >= STREAM_BUFFER) return false;
    this.queue.push(m);
    this.flush();
    return true;
  }

  /** Writes out now what this turn wrote to the stream (it would otherwise wait for the next tick). */
  push(): void {
    const conn = this.conn;
    if (conn !== undefined) this.writePending(conn);
  }

  /** Closes the stream, keeping queued messages for the next one. */
  detach(reason: string): void {
    const conn = this.conn;
    if (conn === undefined) return;
    this.conn = undefined;
    this.deps.clock.clearInterval(conn.heartbeat);
    // node:http ends the answer with the last chunk, after the complete ones written here.
    if (!conn.res.writableEnded && !conn.socket.destroyed) conn.res.end();
    conn.res.destroy();
    this.deps.status.deactivate(reason);
    this.deps.logger.info("closed stream writer", { "stream-type": this.type, "peer-id": this.peerHex, reason });
  }

  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
    this.detach("stopped");
  }

  private flush(): void {
    const conn = this.conn;
    while (conn !== undefined && this.conn === conn && !conn.blocked && this.queue.length > 0) {
      this.write(conn, this.queue.shift()!);
    }
  }

  private write(conn: Conn, m: Message): void {
    if (this.conn !== conn || conn.socket.destroyed) return;
    if (conn.blocked && isLinkHeartbeat(m)) return;
    try {
      const frame = conn.encode(m);
      this.deps.status.counters.sentBytes += frame.length;
      conn.pending.push(frame);
      conn.pendingBytes += frame.length;
      if (!conn.scheduled) {
        conn.scheduled = true;
        process.nextTick(conn.writeTick);
      }
    } catch (err) {
      this.detach(`encoding failed: ${(err as Error).message}`);
    }
  }

  /**
   * Writes the frames encoded so far in one piece, one chunk: a socket write costs a few objects
   * and a system call whatever its size, and a leader sends a message per proposal it steps
   * (etcd's bcastAppend), so a turn's frames go together (at the end of a Ready, `push`, or at
   * the next tick).
   */
  private writePending(conn: Conn): void {
    conn.scheduled = false;
    const { pending, pendingBytes } = conn;
    if (pending.length === 0) return;
    const data = conn.chunked ? httpChunk(pending, pendingBytes) : pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending.length = 0;
    conn.pendingBytes = 0;
    if (this.conn !== conn || conn.socket.destroyed) return;
    if (!conn.socket.write(data)) conn.blocked = true;
  }
}

const CR = 0x0d;
const LF = 0x0a;

/** `frames` (`size` bytes in all) as one chunk of HTTP/1.1's chunked coding: hex size, CRLF, data, CRLF. */
export function httpChunk(frames: readonly Uint8Array[], size: number): Buffer {
  let digits = 1;
  while (size >= 16 ** digits) digits++;
  const out = Buffer.allocUnsafe(digits + 2 + size + 2);
  for (let i = digits - 1, n = size; i >= 0; i--, n = Math.floor(n / 16)) {
    const d = n % 16;
    out[i] = d < 10 ? 0x30 + d : 0x57 + d;
  }
  let at = digits;
  out[at++] = CR;
  out[at++] = LF;
  for (const f of frames) {
    out.set(f, at);
    at += f.length;
  }
  out[at++] = CR;
  out[at] = LF;
  return out;
}

export interface StreamReaderDeps {
  picker: UrlPicker;
  status: PeerStatus;
  client: PeerHttpClient;
  /** The headers of every request this member sends. */
  headers: Record<string, string>;
  localId: NodeId;
  handler: PeerHandler;
  clock: Clock;
  logger: Logger;
}

/** The reading end of one stream from a peer: the GET this member keeps open to it. */
export class StreamReader {
  private stopped = false;
  private current: StreamAnswer | undefined;
  private wake: (() => void) | undefined;
  private redial: TimerHandle | undefined;
  private running: Promise<void> | undefined;

  constructor(readonly type: StreamType, private readonly peerId: NodeId, private readonly deps: StreamReaderDeps) {}

  start(): void {
    this.running ??= this.run();
  }

  /** Closes the stream and stops dialling; resolves when the reader has stopped. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.destroy();
    if (this.redial !== undefined) this.deps.clock.clearTimeout(this.redial);
    this.wake?.();
    await this.running;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const url = this.deps.picker.pick();
      try {
        await this.readOnce(url);
      } catch (err) {
        if (this.stopped) break;
        if (err instanceof RemovedFromClusterError) {
          this.deps.logger.warn("a peer answered that this member was removed from the cluster", { "stream-type": this.type, "peer-id": idHex(this.peerId) });
          this.deps.status.deactivate(`stream ${this.type} to ${url}: ${err.message}`);
          this.stopped = true;
          this.deps.handler.reportRemoved();
          break;
        }
        this.deps.picker.unreachable(url);
        this.deps.status.deactivate(`stream ${this.type} to ${url}: ${(err as Error).message}`);
      }
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.redial = this.deps.clock.setTimeout(resolve, STREAM_REDIAL_MS, { unref: true });
      });
      this.wake = undefined;
      this.redial = undefined;
    }
  }

  /** Dials once and reads until the stream ends. @throws Error why it could not or broke. */
  private async readOnce(url: string): Promise<void> {
    const { client, headers, localId } = this.deps;
    const target = `${url.replace(/\/+$/, "")}/raft/stream/${this.type}/${idHex(localId)}`;
    const answer = await client.openStream(target, { ...headers, "X-Raft-To": idHex(this.peerId) }, STREAM_READ_TIMEOUT_MS);
    this.current = answer;
    if (this.stopped) {
      answer.destroy();
      return;
    }
    if (answer.status !== 200) {
      const body = await answer.text(4096);
      answer.destroy();
      if (answer.status === 410) throw new RemovedFromClusterError();
      throw new Error(streamRefusal(answer.status, body));
    }
    this.deps.status.activate();
    this.deps.logger.info("established stream reader", { "stream-type": this.type, "peer-id": idHex(this.peerId) });
    const decoder = this.type === "msgapp" ? new MsgAppV2Decoder({ local: localId, remote: this.peerId }) : new MessageStreamDecoder();
    const counters = this.deps.status.counters;
    answer.setReadTimeout(STREAM_READ_TIMEOUT_MS, () => new Error("stream read timed out"));
    try {
      await answer.read((chunk) => {
        counters.receivedBytes += chunk.length;
        let messages: Message[];
        try {
          messages = decoder.push(chunk);
        } catch (err) {
          counters.receivedFailures++;
          answer.destroy(err as Error);
          return;
        }
        for (const m of messages) if (!isLinkHeartbeat(m)) this.deliver(m);
      });
      throw new Error("the peer closed the stream");
    } finally {
      this.current = undefined;
      answer.destroy();
      this.deps.logger.info("lost stream reader", { "stream-type": this.type, "peer-id": idHex(this.peerId) });
    }
  }

  private deliver(m: Message): void {
    try {
      if (m.type === MessageType.Snap) throw new PeerMessageRefusedError("SnapshotMisrouted", "a snapshot message on a stream");
      this.deps.handler.process(m);
    } catch (err) {
      this.deps.logger.warn("failed to process a raft message from a stream", { "peer-id": idHex(this.peerId), error: (err as Error).message });
    }
  }
}

/** Why a stream request was not answered 200 (etcd's dial answers). */
function streamRefusal(status: number, body: string): string {
  switch (status) {
    case 410:
      return "the member has been permanently removed from the cluster";
    case 404:
      return "the peer does not know this member (yet)";
    case 412: {
      const text = body.replace(/\n$/, "");
      return text === ERR_INCOMPATIBLE_VERSION || text === ERR_CLUSTER_ID_MISMATCH ? text : `unhandled error ${JSON.stringify(body)} when precondition failed`;
    }
    default:
      return `unhandled http status ${status}`;
  }
}
