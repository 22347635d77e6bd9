/**
 * The receiving end of snapshot transfer: `POST /raft/snapshot` (etcd's snapshotHandler), for
 * the member's peer HTTP(S) server.
 *
 * The body is a merged snapshot: an 8-byte big-endian length and the marshalled MsgSnap (its
 * snapshot data the leader's v2 store, opaque here), then etcd 3.4's bbolt database to the end.
 * In etcd's order, with etcd's answers (http.Error: text/plain, the text and a newline):
 *   method not POST                    405 "Method Not Allowed" (Allow: POST)
 *   version or cluster ID check        412 "incompatible version" / "cluster ID mismatch"
 *   (every answer from here on carries X-Etcd-Cluster-ID)
 *   the message cannot be read         400 "failed to decode raft message (<why>)", e.g. "EOF",
 *                                      "unexpected EOF", "rafthttp: error limit exceeded" or the
 *                                      unmarshaller's error
 *   not a MsgSnap                      400 "wrong raft message type"
 *   the database cannot be saved       500 "failed to save KV snapshot (<why>)"; beyond etcd,
 *                                      a database over the limit or one that is not a sound bbolt
 *                                      file is refused here, before the member sees it
 *   the member refuses it              MemberRemoved: 403, application/json
 *                                      {"message":"cannot process message from removed member"}
 *                                      (etcd's HTTPError); any other refusal or error: 500
 *                                      "failed to process raft message (<why>)"
 *   taken                              204
 * The database is written to `<snap-dir>/<index as 16 hex digits>.snap.db` (through a temporary
 * file, fsynced, renamed; one already there is kept, as etcd keeps it), which the image handed to
 * the member reads when the apply path installs it. The member removes it once its backend holds
 * the snapshot durably (server/snapshot-databases.ts); a refused snapshot's is removed here.
 * Memory: the message is held (bounded by messageLimitBytes); the database streams to disk.
 */
import { exponentialBuckets, HistogramCell } from "../pkg/metric-cells.js";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { BboltReader } from "../mvcc/backend/bbolt-reader.js";
import { goHttpError, goMethodNotAllowed } from "../pkg/go-http-error.js";
import type { Logger } from "../pkg/logger.js";
import { MessageType, type Message, type NodeId } from "../raft/types.js";
import { PeerMessageRefusedError, snapshotDatabaseFileName, type PeerHandler } from "../server/transport-port.js";
import { decodeMessage } from "./message-codec.js";
import { MESSAGE_READ_LIMIT } from "./message-stream.js";
import { checkPeerRequest, idString, remoteOfRequest, type PeerIdentity } from "./peer-headers.js";
import type { SnapshotDatabaseFormat } from "./snapshot-database.js";

export interface SnapshotHandlerOptions extends PeerIdentity {
  /** Where received databases are written (the member's snap directory). */
  snapDir: string;
  /** Largest MsgSnap accepted (its v2 store included); default 512 MiB (etcd: unbounded). */
  messageLimitBytes?: number;
  /** Largest database accepted; default 64 GiB (etcd: unbounded). */
  databaseLimitBytes?: number;
  /** Check every page of a received database before handing it on (default true). */
  checkDatabase?: boolean;
}

export interface SnapshotHandlerDeps {
  member: PeerHandler;
  database: SnapshotDatabaseFormat;
  logger: Logger;
  /** The sender named itself and its peer URLs (etcd's addRemoteFromRequest); optional. */
  addRemote?: (id: NodeId, urls: string[]) => void;
  /** Where received databases' save and fsync times go (etcd_snap_db_* metrics); optional. */
  counters?: SnapshotDbCounters;
}

/** One sender's received snapshots (etcd_network_snapshot_receive_*). */
export class SnapshotReceiveCounters {
  received = 0;
  failures = 0;
  inflight = 0;
  readonly seconds = new HistogramCell(exponentialBuckets(0.1, 2, 10));
}

/**
 * etcd's etcd_snap_db_save_total_duration_seconds and etcd_snap_db_fsync_duration_seconds, and
 * the received snapshots per sender (hex ID).
 */
export class SnapshotDbCounters {
  readonly saveSeconds = new HistogramCell(exponentialBuckets(0.1, 2, 10));
  readonly fsyncSeconds = new HistogramCell(exponentialBuckets(0.001, 2, 14));
  readonly bySender = new Map<string, SnapshotReceiveCounters>();

  /** The counters of sender `fromHex` (members are few: one entry each). */
  sender(fromHex: string): SnapshotReceiveCounters {
    let c = this.bySender.get(fromHex);
    if (c === undefined) {
      c = new SnapshotReceiveCounters();
      this.bySender.set(fromHex, c);
    }
    return c;
  }
}


class BodyError extends Error {}

/** Body bytes read and dropped after an early answer before the connection is closed (Go's 256 KiB). */
const DRAIN_LIMIT_BYTES = 256 * 1024;

/** Reads a request body in order: exact byte counts, then the rest. */
class BodyReader {
  private readonly it: AsyncIterator<Buffer>;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(req: IncomingMessage) {
    this.it = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Exactly `n` bytes; BodyError "EOF" when the body ended before any, "unexpected EOF" inside. */
  async read(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < n) {
      if (this.pending.length === 0) {
        const chunk = await this.next();
        if (chunk === undefined) throw new BodyError(have === 0 ? "EOF" : "unexpected EOF");
        this.pending = chunk;
      }
      const k = Math.min(n - have, this.pending.length);
      parts.push(this.pending.subarray(0, k));
      this.pending = this.pending.subarray(k);
      have += k;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  /** The remaining chunks. */
  async *rest(): AsyncGenerator<Buffer> {
    if (this.pending.length > 0) {
      const p = this.pending;
      this.pending = Buffer.alloc(0);
      yield p;
    }
    for (;;) {
      const chunk = await this.next();
      if (chunk === undefined) return;
      yield chunk;
    }
  }

  private async next(): Promise<Buffer | undefined> {
    if (this.ended) return undefined;
    try {
      const r = await this.it.next();
      if (r.done === true) {
        this.ended = true;
        return undefined;
      }
      return r.value;
    } catch (err) {
      this.ended = true;
      throw new BodyError(`unexpected EOF (${err instanceof Error ? err.message : String(err)})`);
    }
  }
}

/**
 * The handler for `POST /raft/snapshot` (route it there; it reads the whole request). It never
 * rejects: every failure is answered as etcd answers it, and logged.
 */
export function createSnapshotHandler(
  options: SnapshotHandlerOptions,
  deps: SnapshotHandlerDeps,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const messageLimit = options.messageLimitBytes ?? MESSAGE_READ_LIMIT;
  const databaseLimit = options.databaseLimitBytes ?? 64 * 1024 ** 3;
  const logger = deps.logger;

  return async (req, res) => {
    try {
      await handle(req, res);
    } catch (err) {
      logger.error("snapshot request failed unexpectedly", { error: String(err) });
      goHttpError(res, 500, `failed to process raft message (${err instanceof Error ? err.message : String(err)})`);
    }
    // what is left of a refused request's body is drained (the client then reads the answer),
    // up to a bound past which the connection goes
    if (!req.complete) {
      let drained = 0;
      req.on("data", (c: Buffer) => {
        drained += c.length;
        if (drained > DRAIN_LIMIT_BYTES) req.destroy();
      });
      req.on("error", () => undefined);
      req.resume();
    }
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== "POST") {
      goMethodNotAllowed(res, "POST");
      return;
    }
    res.setHeader("X-Etcd-Cluster-ID", idString(options.clusterId));
    const refused = checkPeerRequest(req.headers, options);
    if (refused !== undefined) {
      logger.warn("refused a snapshot request", { reason: refused, "remote-peer-cluster-id": req.headers["x-etcd-cluster-id"] });
      goHttpError(res, 412, refused);
      return;
    }
    const remote = remoteOfRequest(req.headers);
    if (remote !== undefined) deps.addRemote?.(remote.id, remote.urls);

    const body = new BodyReader(req);
    let message: Message;
    try {
      const prefix = await body.read(8);
      const length = prefix.readBigUInt64BE(0);
      if (length > BigInt(messageLimit)) throw new BodyError("rafthttp: error limit exceeded");
      message = decodeMessage(await body.read(Number(length)));
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      logger.warn("failed to decode a snapshot message", { error: why });
      goHttpError(res, 400, `failed to decode raft message (${why})`);
      return;
    }
    const snapshot = message.snapshot;
    if (message.type !== MessageType.Snap) {
      logger.warn("unexpected raft message type on the snapshot path", { "message-type": message.type });
      goHttpError(res, 400, "wrong raft message type");
      return;
    }
    const index = snapshot?.metadata.index ?? 0;
    logger.info("receiving database snapshot", { "remote-snapshot-sender-id": message.from, "incoming-snapshot-index": index });
    const counted = deps.counters?.sender(message.from.toString(16));
    const started = performance.now();
    if (counted !== undefined) counted.inflight++;
    const settle = (ok: boolean): void => {
      if (counted === undefined) return;
      counted.inflight--;
      if (!ok) counted.failures++;
      else {
        counted.received++;
        counted.seconds.observe((performance.now() - started) / 1000);
      }
    };

    const file = path.join(options.snapDir, snapshotDatabaseFileName(index));
    let bytes: number;
    try {
      bytes = await saveDatabase(body, file);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      settle(false);
      logger.warn("failed to save incoming database snapshot", { "incoming-snapshot-index": index, error: why });
      goHttpError(res, 500, `failed to save KV snapshot (${why})`);
      return;
    }
    logger.info("received and saved database snapshot", { "incoming-snapshot-index": index, "incoming-snapshot-size-bytes": bytes });

    // a MsgSnap without a snapshot gets an empty metadata here; the member refuses it (SnapshotMisrouted)
    // The file stays until the member releases it: a restart that finds its backend behind the
    // snapshot installs it from there (server/snapshot-databases.ts).
    const image = deps.database.imageOfEtcdDatabase(file, snapshot?.metadata ?? { index: 0, term: 0, confState: { voters: [], learners: [] } });
    try {
      deps.member.receiveSnapshot({ message, image });
    } catch (err) {
      settle(false);
      void rm(file, { force: true });
      if (err instanceof PeerMessageRefusedError && err.code === "MemberRemoved") {
        logger.warn("rejected a snapshot from a removed member", { "removed-member-id": message.from });
        res.statusCode = 403;
        res.setHeader("Content-Type", "application/json");
        res.end(JSON.stringify({ message: "cannot process message from removed member" }));
        return;
      }
      const why = err instanceof Error ? err.message : String(err);
      logger.warn("failed to process a snapshot message", { error: why });
      goHttpError(res, 500, `failed to process raft message (${why})`);
      return;
    }
    settle(true);
    res.statusCode = 204;
    res.end();
  }

  /** Streams the rest of the body to `file` (temporary, fsynced, renamed); returns its size. */
  async function saveDatabase(body: BodyReader, file: string): Promise<number> {
    const tmp = path.join(options.snapDir, `tmp-${randomBytes(6).toString("hex")}.snap.db`);
    const started = performance.now();
    const fh = await open(tmp, "w", 0o600);
    let bytes = 0;
    let ok = false;
    try {
      for await (const chunk of body.rest()) {
        bytes += chunk.length;
        if (bytes > databaseLimit) throw new Error(`database larger than ${databaseLimit} bytes`);
        let written = 0;
        while (written < chunk.length) written += (await fh.write(chunk, written)).bytesWritten;
      }
      const syncStarted = performance.now();
      await fh.sync();
      deps.counters?.fsyncSeconds.observe((performance.now() - syncStarted) / 1000);
      await fh.close();
      if (options.checkDatabase !== false) checkDatabase(tmp);
      if (existsSync(file)) await rm(tmp, { force: true });
      else await rename(tmp, file);
      ok = true;
      deps.counters?.saveSeconds.observe((performance.now() - started) / 1000);
      return bytes;
    } finally {
      if (!ok) {
        await fh.close().catch(() => undefined);
        await rm(tmp, { force: true });
      }
    }
  }
}

/** Refuses a file that is not a sound bbolt database. */
function checkDatabase(file: string): void {
  const reader = BboltReader.open(file);
  try {
    const problems = reader.check();
    if (problems.length > 0) throw new Error(`invalid database: ${problems.slice(0, 3).join("; ")}`);
  } finally {
    reader.close();
  }
}
