/**
 * Member and cluster IDs computed exactly as etcd computes them, so that an etcd-ts member
 * started with the same peer URLs and cluster token has the same IDs as an etcd member would:
 *  - member ID: the first 8 bytes (big-endian) of SHA-1(sorted peer URLs joined + token [+ unix
 *    seconds when the member is added at runtime]);
 *  - cluster ID: the first 8 bytes of SHA-1 over the sorted member IDs as 8-byte big-endian words.
 */
import { createHash } from "node:crypto";

export function computeMemberId(peerUrls: readonly string[], clusterToken: string, addedAtUnixSeconds?: number): bigint {
  let text = [...peerUrls].sort().join("") + clusterToken;
  if (addedAtUnixSeconds !== undefined) text += String(addedAtUnixSeconds);
  return createHash("sha1").update(text).digest().readBigUInt64BE(0);
}

export function computeClusterId(memberIds: readonly bigint[]): bigint {
  const sorted = [...memberIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const buf = Buffer.alloc(8 * sorted.length);
  sorted.forEach((id, i) => buf.writeBigUInt64BE(id, 8 * i));
  return createHash("sha1").update(buf).digest().readBigUInt64BE(0);
}

/** Formats an ID as etcd prints it (%x: lowercase hex, no leading zeros). */
export function formatId(id: bigint): string {
  return id.toString(16);
}
