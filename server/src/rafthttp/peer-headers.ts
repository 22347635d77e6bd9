/**
 * The headers etcd 3.4 members put on peer requests, and etcd's check of a peer's request
 * against this member (checkClusterCompatibilityFromHeader): its server version and minimum
 * cluster version against ours (major.minor), then its cluster ID.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { NodeId } from "../raft/types.js";

/** The version etcd-ts speaks the peer protocol as, and the oldest cluster it joins. */
export const PEER_SERVER_VERSION = "3.4.23";
export const PEER_MIN_CLUSTER_VERSION = "3.0.0";

/** etcd's text for a version check failure (412). */
export const ERR_INCOMPATIBLE_VERSION = "incompatible version";
/** etcd's text for a cluster ID mismatch (412). */
export const ERR_CLUSTER_ID_MISMATCH = "cluster ID mismatch";

/** An ID as etcd writes it in headers and URLs (types.ID.String(): lower-case hex, no padding). */
export function idString(id: NodeId): string {
  return id.toString(16);
}

export interface PeerIdentity {
  localId: NodeId;
  clusterId: NodeId;
  /** This member's advertised peer URLs (X-PeerURLs); none: the header is left out. */
  peerUrls?: readonly string[];
  /** Default PEER_SERVER_VERSION. */
  serverVersion?: string;
  /** Default PEER_MIN_CLUSTER_VERSION. */
  minClusterVersion?: string;
}

/** The headers of a POST to a peer (etcd's createPostRequest). */
export function peerPostHeaders(identity: PeerIdentity, contentType: string): Record<string, string> {
  const h: Record<string, string> = {
    "Content-Type": contentType,
    "X-Server-From": idString(identity.localId),
    "X-Server-Version": identity.serverVersion ?? PEER_SERVER_VERSION,
    "X-Min-Cluster-Version": identity.minClusterVersion ?? PEER_MIN_CLUSTER_VERSION,
    "X-Etcd-Cluster-ID": idString(identity.clusterId),
  };
  if (identity.peerUrls !== undefined && identity.peerUrls.length > 0) h["X-PeerURLs"] = identity.peerUrls.join(",");
  return h;
}

function header(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name.toLowerCase()];
  return (Array.isArray(v) ? v[0] : v) ?? "";
}

/** major.minor of a semantic version, or undefined when it is not one. */
function majorMinor(v: string): [number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/.exec(v);
  return m === null ? undefined : [Number(m[1]), Number(m[2])];
}

function compare(a: [number, number], b: [number, number]): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

/**
 * etcd's check of a peer request's headers: ERR_INCOMPATIBLE_VERSION when the peer's server
 * version (default 2.0.0) is below our minimum cluster version or its minimum cluster version
 * (default 2.0.0) above our server version, or when either is not a version (etcd crashes the
 * request there); ERR_CLUSTER_ID_MISMATCH when X-Etcd-Cluster-ID is not ours; else undefined.
 */
export function checkPeerRequest(headers: IncomingHttpHeaders, identity: PeerIdentity): string | undefined {
  const remoteServer = majorMinor(header(headers, "X-Server-Version") || "2.0.0");
  const remoteMinCluster = majorMinor(header(headers, "X-Min-Cluster-Version") || "2.0.0");
  const localServer = majorMinor(identity.serverVersion ?? PEER_SERVER_VERSION)!;
  const localMinCluster = majorMinor(identity.minClusterVersion ?? PEER_MIN_CLUSTER_VERSION)!;
  if (remoteServer === undefined || remoteMinCluster === undefined) return ERR_INCOMPATIBLE_VERSION;
  if (compare(remoteServer, localMinCluster) < 0 || compare(remoteMinCluster, localServer) > 0) return ERR_INCOMPATIBLE_VERSION;
  if (header(headers, "X-Etcd-Cluster-ID") !== idString(identity.clusterId)) return ERR_CLUSTER_ID_MISMATCH;
  return undefined;
}

/** The sender and its advertised peer URLs, when the request names them (etcd's addRemoteFromRequest). */
export function remoteOfRequest(headers: IncomingHttpHeaders): { id: NodeId; urls: string[] } | undefined {
  const from = header(headers, "X-Server-From");
  const urls = header(headers, "X-PeerURLs");
  if (!/^[0-9a-fA-F]{1,16}$/.test(from) || urls === "") return undefined;
  return { id: BigInt("0x" + from), urls: urls.split(",") };
}
