/**
 * The facts every request and answer on the peer port shares (etcd 3.4's rafthttp headers):
 * member and cluster IDs as bare lowercase hex (etcd's types.ID), the versions this member
 * speaks as, and the compatibility check a receiver runs on a sender's headers before anything
 * else (answered with 412 and one of the two texts below).
 *
 *   X-Server-From          the sender's member ID
 *   X-Server-Version       the sender's server version (absent: 2.0.0)
 *   X-Min-Cluster-Version  the lowest cluster version the sender runs in (absent: 2.0.0)
 *   X-Etcd-Cluster-ID      the sender's cluster ID; answers carry the receiver's
 *   X-PeerURLs             the sender's advertised peer URLs, comma-separated
 *   X-Raft-To              (streams) the member the sender means to reach
 */
import type { IncomingHttpHeaders } from "node:http";
import type { NodeId } from "../raft/types.js";

/** The server version this member speaks as on the peer port. */
export const SERVER_VERSION = "3.4.23";
/** The lowest cluster version a member of this version can run in. */
export const MIN_CLUSTER_VERSION = "3.0.0";

export const ERR_INCOMPATIBLE_VERSION = "incompatible version";
export const ERR_CLUSTER_ID_MISMATCH = "cluster ID mismatch";

/** An ID as etcd prints it: lowercase hex without padding. */
export function idHex(id: NodeId): string {
  return id.toString(16);
}

/** Parses a hex member ID (etcd's types.IDFromString): 1 to 16 hex digits; undefined otherwise. */
export function parseIdHex(s: string): NodeId | undefined {
  return /^[0-9a-fA-F]{1,16}$/.test(s) ? BigInt("0x" + s) : undefined;
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** major.minor of a semantic version; undefined when it is not one. */
function majorMinor(v: string): [number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

function compareMajorMinor(a: [number, number], b: [number, number]): number {
  return a[0] !== b[0] ? Math.sign(a[0] - b[0]) : Math.sign(a[1] - b[1]);
}

/**
 * The receiver's check of a sender's headers: its server version must not be below our minimum
 * cluster version, and its minimum cluster version not above our version (by major.minor), and
 * its cluster ID must be ours.
 * @returns undefined when compatible, else the text to answer with 412.
 */
export function checkCompatibility(h: IncomingHttpHeaders, clusterId: bigint): string | undefined {
  const server = majorMinor(header(h, "X-Server-Version") ?? "2.0.0");
  const minCluster = majorMinor(header(h, "X-Min-Cluster-Version") ?? "2.0.0");
  if (server === undefined || minCluster === undefined) return ERR_INCOMPATIBLE_VERSION;
  if (compareMajorMinor(server, majorMinor(MIN_CLUSTER_VERSION)!) < 0) return ERR_INCOMPATIBLE_VERSION;
  if (compareMajorMinor(minCluster, majorMinor(SERVER_VERSION)!) > 0) return ERR_INCOMPATIBLE_VERSION;
  if (header(h, "X-Etcd-Cluster-ID") !== idHex(clusterId)) return ERR_CLUSTER_ID_MISMATCH;
  return undefined;
}

/** The headers a sender puts on every request (the stream's X-Raft-To is added by the reader). */
export function senderHeaders(local: { memberId: NodeId; clusterId: bigint; peerUrls: readonly string[] }): Record<string, string> {
  const h: Record<string, string> = {
    "X-Server-From": idHex(local.memberId),
    "X-Server-Version": SERVER_VERSION,
    "X-Min-Cluster-Version": MIN_CLUSTER_VERSION,
    "X-Etcd-Cluster-ID": idHex(local.clusterId),
  };
  if (local.peerUrls.length > 0) h["X-PeerURLs"] = local.peerUrls.join(",");
  return h;
}

/** Reads a header as one string. */
export function headerValue(h: IncomingHttpHeaders, name: string): string | undefined {
  return header(h, name);
}
