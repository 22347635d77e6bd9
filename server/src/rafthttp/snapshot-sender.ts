/**
 * The sending end of snapshot transfer (etcd's snapshotSender): POSTs a merged snapshot to a
 * peer's `/raft/snapshot` as etcd 3.4 does, so that etcd members and ours take it alike.
 *
 * Body: the MsgSnap framed as on the message stream (8-byte big-endian length, marshalled
 * message), then the sender's backend as an etcd 3.4 bbolt database. The database is written
 * from the image first, to a temporary file in the snap directory (a bbolt file's head is written
 * last, so it cannot go out as it is made), then streamed from there and removed: memory holds
 * one write buffer, never the database. Headers: etcd's createPostRequest (Content-Type
 * application/octet-stream, X-Server-From, X-Server-Version, X-Min-Cluster-Version,
 * X-Etcd-Cluster-ID, X-PeerURLs), plus a Content-Length (etcd sends the body chunked; both are
 * HTTP/1.1 bodies its handler reads alike).
 *
 * Outcome (etcd's checkPostResponse): 204 is success; 403 is "member removed"; 412 with
 * "incompatible version" or "cluster ID mismatch" is that; anything else, a network error, or no
 * answer within responseTimeoutMs after the body was sent, is a failure. sendSnapshot never
 * rejects: the caller reports the outcome (PeerHandler.reportSnapshot(to, ok), and on failure
 * reportUnreachable(to), as etcd does).
 */
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import http, { type ClientRequest, type IncomingMessage } from "node:http";
import https from "node:https";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { BboltWriter } from "../mvcc/backend/bbolt-writer.js";
import type { Logger } from "../pkg/logger.js";
import type { MergedSnapshot } from "../server/transport-port.js";
import { encodeMessageFrame } from "./message-stream.js";
import { ERR_CLUSTER_ID_MISMATCH, ERR_INCOMPATIBLE_VERSION, peerPostHeaders, type PeerIdentity } from "./peer-headers.js";
import type { SnapshotDatabaseFormat } from "./snapshot-database.js";

export interface SnapshotSenderOptions extends PeerIdentity {
  /** Where the outgoing database is staged while it is sent (the member's snap directory). */
  snapDir: string;
  /** For https peer URLs: CA, client certificate and key, servername... (node's https options). */
  tls?: https.RequestOptions;
  /** How long to wait for the answer once the body is sent; default 5 s (etcd's). */
  responseTimeoutMs?: number;
  /** Stops the transfer (etcd's stopc): the outcome is then a failure. */
  signal?: AbortSignal;
}

export interface SnapshotSenderDeps {
  database: SnapshotDatabaseFormat;
  logger: Logger;
}

export type SnapshotSendFailure =
  /** The peer answered 403: this member was removed from the cluster (a critical error in etcd). */
  | "MemberRemoved"
  | "ClusterIdMismatch"
  | "IncompatibleVersion"
  /** Any other answer, a network error, a timeout, or the database could not be written. */
  | "Failed";

export type SnapshotSendResult =
  | { ok: true; bytes: number }
  | { ok: false; failure: SnapshotSendFailure; error: string };

/** Sends `merged` to the peer at `peerUrl` (its scheme, host and port; the path is replaced). */
export async function sendSnapshot(
  merged: MergedSnapshot,
  peerUrl: string,
  options: SnapshotSenderOptions,
  deps: SnapshotSenderDeps,
): Promise<SnapshotSendResult> {
  const { logger } = deps;
  const m = merged.message;
  const index = m.snapshot?.metadata.index ?? 0;
  const tmp = path.join(options.snapDir, `tmp-send-${randomBytes(6).toString("hex")}.snap.db`);
  try {
    let frame: Uint8Array;
    let dbBytes: number;
    try {
      frame = encodeMessageFrame(m);
      const writer = await BboltWriter.create(tmp);
      dbBytes = (await deps.database.writeEtcdDatabase(merged.image, writer)).sizeBytes;
    } catch (err) {
      return failed("Failed", `failed to prepare the database snapshot: ${String(err)}`);
    }
    const total = frame.length + dbBytes;
    logger.info("sending database snapshot", { "snapshot-receiver-id": m.to, "snapshot-index": index, "snapshot-size-bytes": total });
    const url = new URL("/raft/snapshot", peerUrl);
    const headers = { ...peerPostHeaders(options, "application/octet-stream"), "Content-Length": String(total) };
    const result = await post(url, headers, frame, tmp, options);
    if (result.ok) logger.info("sent database snapshot", { "snapshot-receiver-id": m.to, "snapshot-index": index, "snapshot-size-bytes": total });
    else logger.warn("failed to send database snapshot", { "snapshot-receiver-id": m.to, "snapshot-index": index, error: result.error });
    return result.ok ? { ok: true, bytes: total } : result;
  } finally {
    await rm(tmp, { force: true });
  }
}

function failed(failure: SnapshotSendFailure, error: string): SnapshotSendResult {
  return { ok: false, failure, error };
}

async function post(
  url: URL,
  headers: Record<string, string>,
  frame: Uint8Array,
  dbFile: string,
  options: SnapshotSenderOptions,
): Promise<SnapshotSendResult> {
  const timeoutMs = options.responseTimeoutMs ?? 5_000;
  const isHttps = url.protocol === "https:";
  if (!isHttps && url.protocol !== "http:") return failed("Failed", `unsupported peer URL scheme ${url.protocol}`);
  return new Promise<SnapshotSendResult>((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (r: SnapshotSendResult): void => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      req.destroy();
      resolve(r);
    };
    const onAbort = (): void => settle(failed("Failed", "rafthttp: stopped"));
    const reqOptions = { ...(isHttps ? options.tls : {}), method: "POST", headers };
    const req: ClientRequest = (isHttps ? https : http).request(url, reqOptions, (res: IncomingMessage) => {
      // etcd reads the answer for at most 5 s once it has come
      timer ??= setTimeout(() => settle(failed("Failed", "timed out reading the answer")), timeoutMs);
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        if (size < 64 * 1024) chunks.push(c);
        size += c.length;
      });
      res.on("error", (err) => settle(failed("Failed", String(err))));
      res.on("end", () => settle(checkAnswer(res, Buffer.concat(chunks).toString("utf8"), url)));
    });
    req.on("error", (err) => settle(failed("Failed", err.message)));
    if (options.signal?.aborted === true) return onAbort();
    options.signal?.addEventListener("abort", onAbort);
    req.write(frame);
    pipeline(createReadStream(dbFile), req)
      .then(() => {
        timer ??= setTimeout(() => settle(failed("Failed", "timed out waiting for the answer")), timeoutMs);
      })
      .catch((err: unknown) => settle(failed("Failed", err instanceof Error ? err.message : String(err))));
  });
}

function checkAnswer(res: IncomingMessage, body: string, url: URL): SnapshotSendResult {
  switch (res.statusCode) {
    case 204:
      return { ok: true, bytes: 0 };
    case 403:
      return failed("MemberRemoved", "the member has been permanently removed from the cluster");
    case 412: {
      const text = body.replace(/\n$/, "");
      if (text === ERR_INCOMPATIBLE_VERSION) return failed("IncompatibleVersion", text);
      if (text === ERR_CLUSTER_ID_MISMATCH) return failed("ClusterIdMismatch", text);
      return failed("Failed", `unhandled error ${JSON.stringify(body)} when precondition failed`);
    }
    default:
      return failed("Failed", `unexpected http status ${res.statusCode} ${http.STATUS_CODES[res.statusCode ?? 0] ?? ""} while posting to ${JSON.stringify(url.toString())}: ${body.slice(0, 200)}`);
  }
}
