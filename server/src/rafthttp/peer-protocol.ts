/**
 * What the transport, its streams and the peer port share of etcd 3.4's peer headers, on top of
 * peer-headers.ts (which holds the versions, the IDs' spelling and the receiver's check):
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
import { checkPeerRequest, idString, PEER_SERVER_VERSION, peerPostHeaders } from "./peer-headers.js";

export { ERR_CLUSTER_ID_MISMATCH, ERR_INCOMPATIBLE_VERSION } from "./peer-headers.js";

/** The server version this member speaks as on the peer port. */
export const SERVER_VERSION = PEER_SERVER_VERSION;

/** An ID as etcd prints it: lowercase hex without padding. */
export const idHex = idString;

/** Parses a hex member ID (etcd's types.IDFromString): 1 to 16 hex digits; undefined otherwise. */
export function parseIdHex(s: string): NodeId | undefined {
  return /^[0-9a-fA-F]{1,16}$/.test(s) ? BigInt("0x" + s) : undefined;
}

/**
 * A peer told this member that it was removed from the cluster (a stream answered 410 Gone, a
 * post or a snapshot 403). The transport reports it to the member (PeerHandler.reportRemoved),
 * which stops, as etcd's does; the data dir must not be reused.
 */
export class RemovedFromClusterError extends Error {
  constructor() {
    super("the member has been permanently removed from the cluster");
    this.name = "RemovedFromClusterError";
  }
}

/** The receiver's check of a sender's headers: undefined when compatible, else the 412 text. */
export function checkCompatibility(h: IncomingHttpHeaders, clusterId: bigint): string | undefined {
  return checkPeerRequest(h, { localId: 0n, clusterId });
}

/** The headers a sender puts on every request (the stream's X-Raft-To is added by the reader). */
export function senderHeaders(local: { memberId: NodeId; clusterId: bigint; peerUrls: readonly string[] }): Record<string, string> {
  const h = peerPostHeaders({ localId: local.memberId, clusterId: local.clusterId, peerUrls: local.peerUrls }, "");
  delete h["Content-Type"];
  return h;
}

/** Reads a header as one string. */
export function headerValue(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
