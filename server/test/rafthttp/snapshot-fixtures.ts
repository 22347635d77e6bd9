/** A small etcd-ts backend image (keys, leases, members, meta) for the snapshot transfer tests. */
import { KeyValue } from "@etcd-ts/proto/mvccpb/kv";
import { bucketKey, encodeUint64, type BackendImage, type BucketName } from "../../src/mvcc/backend/backend.js";
import { revisionKey } from "../../src/mvcc/revision.js";
import { encodeMember } from "../../src/server/cluster/membership.js";
import { META_MVCC_CONSISTENT_INDEX } from "../../src/server/mvcc-store-port.js";

export const LEADER = 0x8e9e05c52164694dn;
export const FOLLOWER = 0x91bc3c398fb3c146n;

/**
 * 300 keys key-0001..key-0300 at revisions 2..301 (value "value <i> " repeated i % 7 times), a
 * lease, two members, a removed one, the cluster version; consistent index 350 (key space 340).
 */
export function pairs(): [Buffer, Buffer][] {
  const out: [Buffer, Buffer][] = [];
  const put = (b: BucketName, k: Buffer | string, v: Buffer | string): void => {
    out.push([bucketKey(b, Buffer.from(k)), Buffer.from(v)]);
  };
  for (let i = 1; i <= 300; i++) {
    const kv = KeyValue.encode({
      key: Buffer.from(`key-${String(i).padStart(4, "0")}`), createRevision: BigInt(i + 1), modRevision: BigInt(i + 1),
      version: 1n, value: Buffer.from(`value ${i} `.repeat(i % 7)), lease: 0n,
    }).finish();
    out.push([revisionKey(i + 1, 0, false), Buffer.from(kv)]); // with its bucket byte
  }
  put("meta", "consistent_index", encodeUint64(350));
  put("meta", META_MVCC_CONSISTENT_INDEX, encodeUint64(340));
  put("meta", "finishedCompactRev", revisionKey(2, 0, false).subarray(1));
  put("meta", "term", encodeUint64(3));
  const lease = Buffer.alloc(16);
  lease.writeBigUInt64BE(60n, 0);
  lease.writeBigUInt64BE(42n, 8);
  const leaseKey = Buffer.alloc(8);
  leaseKey.writeBigInt64BE(0x694d7c7d2ea8c6b1n);
  out.push([bucketKey("lease", leaseKey), lease]);
  put("members", LEADER.toString(16), encodeMember({ id: LEADER, name: "a", peerUrls: ["http://127.0.0.1:2380"], clientUrls: ["http://127.0.0.1:2379"], isLearner: false }));
  put("members", FOLLOWER.toString(16), encodeMember({ id: FOLLOWER, name: "b", peerUrls: ["http://127.0.0.1:2381"], clientUrls: [], isLearner: true }));
  put("members", "removed/" + (0x1234n).toString(16), "1");
  put("members", "clusterVersion", "3.4.0");
  put("auth", "authRevision", encodeUint64(1));
  return out.sort((a, b) => Buffer.compare(a[0], b[0]));
}

export function imageOf(list: [Buffer, Buffer][]): BackendImage {
  return {
    async *[Symbol.asyncIterator]() {
      yield* list;
    },
  };
}

