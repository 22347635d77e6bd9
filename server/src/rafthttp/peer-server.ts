/**
 * The peer port's HTTP handler (etcd 3.4's peer mux): what other members reach this one with.
 *
 *   POST /raft                     pipeline: one protobuf Message, answered 204
 *   GET  /raft/stream/msgapp/<id>  a stream the peer <id> reads from us (msgappv2)
 *   GET  /raft/stream/message/<id> a stream the peer <id> reads from us (length-prefixed)
 *   POST /raft/snapshot            a merged snapshot (mounted from the snapshot path)
 *   GET  /raft/probing             liveness for peers' probes
 *   GET  /members                  the members as JSON
 *   POST /members/promote/<id>     promotes a learner (id in decimal), answers the members
 *   POST /leases, /leases/internal lease keep-alive and time-to-live forwarded by followers
 *   GET  /members/hashkv           this member's HashKV at a revision (the corruption checks)
 *   GET  /version                  server and cluster versions
 *
 * Answers, texts and headers are etcd's (Go's http.Error: text/plain, nosniff, text + "\n"),
 * so etcd members and etcd-ts members understand each other. Bad input is answered and
 * forgotten: the member stays up on anything a peer sends.
 */
import type http from "node:http";
import { LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { Message } from "../raft/types.js";
import type { Logger } from "../pkg/logger.js";
import { PeerMessageRefusedError, type PeerHandler } from "../server/transport-port.js";
import { decodeMessage } from "./message-codec.js";
import { goHttpError, goMethodNotAllowed } from "../pkg/go-http-error.js";
import { checkCompatibility, headerValue, idHex, parseIdHex, SERVER_VERSION } from "./peer-protocol.js";
import type { StreamType } from "./stream.js";
import type { StreamRegistry } from "./transport.js";

/** A member as the peer port describes it. */
export interface PeerMember {
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export type PeerServiceErrorCode = "MemberNotFound" | "MemberNotLearner" | "LearnerNotReady" | "LeaseNotFound" | "Timeout" | "Other";

/** A refusal from the member, mapped to etcd's status and text by the peer server. */
export class PeerServiceError extends Error {
  override name = "PeerServiceError";
  constructor(readonly code: PeerServiceErrorCode, message: string) {
    super(message);
  }
}

/** What the peer port needs of the member (the adapter lives where the member is assembled). */
export interface PeerServices {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  /** The members, sorted by ID. */
  members(): PeerMember[];
  /** The cluster version, "" while not decided. */
  clusterVersion(): string;
  /** @throws PeerServiceError MemberNotFound, MemberNotLearner, LearnerNotReady, Other */
  promoteMember(id: bigint): Promise<PeerMember[]>;
  /** Renews a lease on this member's lessor: the new TTL. @throws PeerServiceError LeaseNotFound, Timeout, Other */
  leaseRenew(id: bigint): Promise<number>;
  /** A lease's remaining and granted TTL (and keys). @throws PeerServiceError LeaseNotFound, Timeout */
  leaseTimeToLive(id: bigint, keys: boolean): Promise<{ ttl: number; grantedTtl: number; keys: Uint8Array[] }>;
  /**
   * This member's HashKV at `revision` (0: current), or the refusal text etcd answers with 400
   * (a compacted or future revision). Absent: the route answers 404.
   */
  hashKV?(revision: number): Promise<{ status: 200; hash: { revision: number; hash: number; compactRevision: number } } | { status: 400; text: string }>;
}

export interface PeerServerOptions {
  /** Largest pipeline body accepted (answered 413 above it). Default 64 MiB. */
  maxMessageBytes?: number;
}

export interface PeerServerDeps {
  services: PeerServices;
  handler: PeerHandler;
  streams: StreamRegistry;
  /** Serves POST /raft/snapshot; without one the route answers 503. */
  snapshotHandler?: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  logger: Logger;
}

/** Bodies of lease and promote requests are small protobufs. */
const MAX_SMALL_BODY_BYTES = 64 * 1024;

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** The handler for the peer listeners' http/https servers. */
export function peerRequestHandler(options: PeerServerOptions, deps: PeerServerDeps): Handler {
  const maxMessageBytes = options.maxMessageBytes ?? 64 * 1024 * 1024;
  const { services, logger } = deps;
  const cid = idHex(services.clusterId);

  const pipeline = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!allowMethod(req, res, "POST")) return;
    res.setHeader("X-Etcd-Cluster-ID", cid);
    const incompatible = checkCompatibility(req.headers, services.clusterId);
    if (incompatible !== undefined) return httpError(res, 412, incompatible);
    addRemoteFromRequest(req, deps.streams);
    readBody(req, maxMessageBytes).then((body) => {
      if (body === "too large") return httpError(res, 413, "error reading raft message");
      if (body === undefined) return httpError(res, 400, "error reading raft message");
      let m: Message;
      try {
        m = decodeMessage(body);
      } catch {
        return httpError(res, 400, "error unmarshalling raft message");
      }
      deps.streams.countReceived?.(m.from, body.length);
      try {
        deps.handler.process(m);
      } catch (err) {
        if (err instanceof PeerMessageRefusedError && err.code === "MemberRemoved") {
          return jsonError(res, 403, "cannot process message from removed member");
        }
        if (err instanceof PeerMessageRefusedError && err.code === "SnapshotMisrouted") return httpError(res, 400, "wrong raft message type");
        logger.warn("failed to process Raft message", { error: (err as Error).message });
        return httpError(res, 500, "error processing raft message");
      }
      res.statusCode = 204;
      res.end();
    }, () => httpError(res, 400, "error reading raft message"));
  };

  const stream = (req: http.IncomingMessage, res: http.ServerResponse, path: string): void => {
    if (!allowMethod(req, res, "GET")) return;
    res.setHeader("X-Server-Version", SERVER_VERSION);
    res.setHeader("X-Etcd-Cluster-ID", cid);
    const incompatible = checkCompatibility(req.headers, services.clusterId);
    if (incompatible !== undefined) return httpError(res, 412, incompatible);
    const dir = path.slice(0, path.lastIndexOf("/"));
    const type: StreamType | undefined = dir === "/raft/stream/msgapp" ? "msgapp" : dir === "/raft/stream/message" ? "message" : undefined;
    if (type === undefined) return httpError(res, 404, "invalid path");
    const from = parseIdHex(path.slice(path.lastIndexOf("/") + 1));
    if (from === undefined) return httpError(res, 404, "invalid from");
    if (deps.handler.isIdRemoved(from)) return httpError(res, 410, "removed member");
    if (!deps.streams.hasPeer(from)) {
      const urls = headerValue(req.headers, "X-PeerURLs");
      if (urls) deps.streams.addRemote(from, urls.split(","));
      logger.warn("failed to find remote peer in cluster", { "remote-peer-id-from": idHex(from), "cluster-id": cid });
      return httpError(res, 404, "error sender not found");
    }
    if (headerValue(req.headers, "X-Raft-To") !== idHex(services.memberId)) return httpError(res, 412, "to field mismatch");
    res.statusCode = 200;
    res.flushHeaders();
    res.socket?.setNoDelay(true);
    deps.streams.attachStream(from, type, res);
  };

  const members = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!allowMethod(req, res, "GET")) return;
    res.setHeader("X-Etcd-Cluster-ID", cid);
    res.setHeader("Content-Type", "application/json");
    res.end(membersJson(services.members()) + "\n");
  };

  const promote = (req: http.IncomingMessage, res: http.ServerResponse, path: string): void => {
    if (!allowMethod(req, res, "POST")) return;
    res.setHeader("X-Etcd-Cluster-ID", cid);
    const idStr = path.slice("/members/promote/".length);
    if (!/^\d{1,20}$/.test(idStr) || BigInt(idStr) > 0xffffffffffffffffn) return httpError(res, 404, `member ${idStr} not found in cluster`);
    req.resume();
    services.promoteMember(BigInt(idStr)).then(
      (ms) => {
        res.setHeader("Content-Type", "application/json");
        res.statusCode = 200;
        res.end(membersJson(ms) + "\n");
      },
      (err: unknown) => {
        const e = err instanceof PeerServiceError ? err : new PeerServiceError("Other", String((err as Error)?.message ?? err));
        const status = e.code === "MemberNotFound" ? 404 : e.code === "MemberNotLearner" || e.code === "LearnerNotReady" ? 412 : 500;
        httpError(res, status, e.message);
      },
    );
  };

  const leases = (req: http.IncomingMessage, res: http.ServerResponse, path: string): void => {
    if (req.method !== "POST") return httpError(res, 405, "Method Not Allowed");
    readBody(req, MAX_SMALL_BODY_BYTES).then(async (body) => {
      if (body === undefined || body === "too large") return httpError(res, 400, "error reading body");
      let answer: Uint8Array;
      try {
        if (path === "/leases") {
          let id: bigint;
          try {
            id = LeaseKeepAliveRequest.decode(body).ID;
          } catch {
            return httpError(res, 400, "error unmarshalling request");
          }
          const ttl = await services.leaseRenew(id);
          answer = LeaseKeepAliveResponse.encode({ header: undefined, ID: id, TTL: BigInt(ttl) }).finish();
        } else {
          let inner: LeaseTimeToLiveRequest;
          try {
            inner = LeaseTimeToLiveRequest.decode(unwrapField1(body) ?? new Uint8Array(0));
          } catch {
            return httpError(res, 400, "error unmarshalling request");
          }
          const t = await services.leaseTimeToLive(inner.ID, inner.keys);
          const resp = LeaseTimeToLiveResponse.encode({
            header: { clusterId: 0n, memberId: 0n, revision: 0n, raftTerm: 0n },
            ID: inner.ID,
            TTL: BigInt(t.ttl),
            grantedTTL: BigInt(t.grantedTtl),
            keys: t.keys.map((k) => Buffer.from(k)),
          }).finish();
          answer = wrapField1(resp);
        }
      } catch (err) {
        const e = err instanceof PeerServiceError ? err : new PeerServiceError("Other", String((err as Error)?.message ?? err));
        return httpError(res, e.code === "LeaseNotFound" ? 404 : e.code === "Timeout" ? 408 : 400, e.message);
      }
      res.setHeader("Content-Type", "application/protobuf");
      res.end(answer);
    }, () => httpError(res, 400, "error reading body"));
  };

  /** etcd's hashKVHandler: a JSON HashKVRequest in a GET body, a JSON HashKVResponse back. */
  const hashKV = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!allowMethod(req, res, "GET")) return;
    const serve = services.hashKV;
    if (serve === undefined) return httpError(res, 404, "404 page not found");
    readBody(req, MAX_SMALL_BODY_BYTES).then(async (body) => {
      if (body === undefined || body === "too large") return httpError(res, 400, "error reading body");
      let revision: number;
      try {
        const parsed = JSON.parse(Buffer.from(body).toString()) as { revision?: unknown };
        revision = parsed.revision === undefined ? 0 : Number(parsed.revision);
        if (!Number.isSafeInteger(revision)) throw new Error("revision");
      } catch {
        return httpError(res, 400, "error unmarshalling request");
      }
      let answer;
      try {
        answer = await serve(revision);
      } catch (err) {
        return httpError(res, 500, (err as Error).message);
      }
      if (answer.status === 400) return httpError(res, 400, answer.text);
      const { hash } = answer;
      // Go's encoding/json over the gogo struct: zero fields are left out (omitempty).
      const header = hash.revision !== 0 ? `{"revision":${hash.revision}}` : "{}";
      const fields = [`"header":${header}`];
      if (hash.hash !== 0) fields.push(`"hash":${hash.hash}`);
      if (hash.compactRevision !== 0) fields.push(`"compact_revision":${hash.compactRevision}`);
      res.setHeader("X-Etcd-Cluster-ID", idHex(services.clusterId));
      res.setHeader("Content-Type", "application/json");
      res.end(`{${fields.join(",")}}`);
    }, () => httpError(res, 400, "error reading body"));
  };

  const version = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!allowMethod(req, res, "GET")) return;
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ etcdserver: SERVER_VERSION, etcdcluster: services.clusterVersion() || "not_decided" }));
  };

  return (req, res) => {
    try {
      const path = new URL(req.url ?? "/", "http://peer").pathname;
      if (path === "/raft") return pipeline(req, res);
      if (path.startsWith("/raft/stream/")) return stream(req, res, path);
      if (path === "/raft/snapshot") {
        if (deps.snapshotHandler) return deps.snapshotHandler(req, res);
        if (!allowMethod(req, res, "POST")) return;
        return httpError(res, 503, "receiving snapshots is not available on this member");
      }
      if (path === "/raft/probing") {
        res.setHeader("Content-Type", "text/plain; charset=utf-8");
        res.end(JSON.stringify({ OK: true, Now: new Date().toISOString() }) + "\n");
        return;
      }
      if (path === "/members") return members(req, res);
      if (path.startsWith("/members/promote/")) return promote(req, res, path);
      if (path === "/members/hashkv") return hashKV(req, res);
      if (path === "/leases" || path === "/leases/internal") return leases(req, res, path);
      if (path === "/version") return version(req, res);
      return httpError(res, 404, "404 page not found");
    } catch (err) {
      logger.warn("peer request failed", { error: (err as Error).message });
      if (!res.headersSent) httpError(res, 400, "bad request");
      else res.destroy();
    }
  };
}

/** Go's http.Error; a response already under way is cut off instead. */
function httpError(res: http.ServerResponse, status: number, text: string): void {
  if (!goHttpError(res, status, text)) res.destroy();
}

/** etcd's HTTPError.WriteTo: {"message": …} as JSON. */
function jsonError(res: http.ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader("Content-Type", "application/json");
  res.end(JSON.stringify({ message }));
}

function allowMethod(req: http.IncomingMessage, res: http.ServerResponse, method: string): boolean {
  if (req.method === method) return true;
  req.resume();
  if (!goMethodNotAllowed(res, method)) res.destroy();
  return false;
}

function addRemoteFromRequest(req: http.IncomingMessage, streams: StreamRegistry): void {
  const from = parseIdHex(headerValue(req.headers, "X-Server-From") ?? "");
  const urls = headerValue(req.headers, "X-PeerURLs");
  if (from !== undefined && urls) streams.addRemote(from, urls.split(","));
}

/** The whole body, "too large" past `limit` bytes (the rest is discarded), undefined on a broken read. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | "too large" | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) over = true;
      else chunks.push(c);
    });
    req.on("end", () => resolve(over ? "too large" : Buffer.concat(chunks)));
    req.on("error", () => resolve(undefined));
    req.on("aborted", () => resolve(undefined));
  });
}

/** JSON text as Go's encoder writes it (HTML characters escaped). */
function goJsonString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/**
 * The members as etcd writes them: `id` a JSON number (the whole uint64, unrounded), then
 * peerURLs, and isLearner, name, clientURLs only when set.
 */
export function membersJson(ms: readonly PeerMember[]): string {
  const items = ms.map((m) => {
    let s = `{"id":${m.id.toString()},"peerURLs":[${m.peerUrls.map(goJsonString).join(",")}]`;
    if (m.isLearner) s += `,"isLearner":true`;
    if (m.name !== "") s += `,"name":${goJsonString(m.name)}`;
    if (m.clientUrls.length > 0) s += `,"clientURLs":[${m.clientUrls.map(goJsonString).join(",")}]`;
    return s + "}";
  });
  return `[${items.join(",")}]`;
}

/** Field 1 (length-delimited) of a protobuf message, the wrapper of leasepb's internal messages. */
export function unwrapField1(b: Uint8Array): Uint8Array | undefined {
  let pos = 0;
  let found: Uint8Array | undefined;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= b.length) throw new Error("truncated varint");
      const byte = b[pos++]!;
      v |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return v;
    }
    throw new Error("varint too long");
  };
  while (pos < b.length) {
    const tag = varint();
    const field = tag >> 3n;
    switch (Number(tag & 7n)) {
      case 0:
        varint();
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const n = Number(varint());
        if (pos + n > b.length) throw new Error("truncated field");
        if (field === 1n) found = b.subarray(pos, pos + n);
        pos += n;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new Error("bad wire type");
    }
    if (pos > b.length) throw new Error("truncated field");
  }
  return found;
}

/** A message as field 1 of a wrapper message. */
export function wrapField1(inner: Uint8Array): Uint8Array {
  const len: number[] = [];
  let n = inner.length;
  while (n >= 0x80) {
    len.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  len.push(n);
  return Buffer.concat([Uint8Array.of(0x0a, ...len), inner]);
}

