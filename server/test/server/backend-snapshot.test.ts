/**
 * writeEtcdSnapshotFile: etcd-ts's backend records come out in etcd 3.4's buckets and formats
 * (member JSON, members_removed, cluster version, leasepb leases, AlarmMember keys, meta keys,
 * auth revision), checked by reading the file back.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Backend, encodeUint64 } from "../../src/mvcc/backend/backend.js";
import { BboltReader } from "../../src/mvcc/backend/bbolt-reader.js";
import { encodeRevisionValue, revisionKey } from "../../src/mvcc/revision.js";
import { SnapshotAbortedError, encodeEtcdMemberJson, goJsonString, writeEtcdSnapshotFile } from "../../src/server/backend-snapshot.js";
import { encodeMember } from "../../src/server/cluster/membership.js";
import { META_MVCC_CONSISTENT_INDEX } from "../../src/server/mvcc-store-port.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "backend-snapshot-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Protobuf varint, as hex (test-side reference encoder). */
function varintHex(v: bigint): string {
  const out: number[] = [];
  let x = v;
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return Buffer.from(out).toString("hex");
}

function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}

describe("writeEtcdSnapshotFile", () => {
  it("maps every bucket to etcd's name and record format", async () => {
    const backend = await Backend.open(path.join(dir, "db1"));
    try {
      const b = backend.batch();
      const keys = 5000;
      for (let rev = 2; rev < 2 + keys; rev++) b.putPrefixed(Buffer.concat([Buffer.from([0x01]), revisionKey(rev, 0, false).subarray(1)]), Buffer.from(`kv-${rev}`));
      b.put("meta", Buffer.from("term"), encodeUint64(3));
      b.put("meta", Buffer.from("confState"), Buffer.from("opaque"));
      b.put("meta", META_MVCC_CONSISTENT_INDEX, encodeUint64(40));
      b.put("meta", Buffer.from("scheduledCompactRev"), encodeRevisionValue(7));
      b.put("meta", Buffer.from("finishedCompactRev"), encodeRevisionValue(7));
      const leaseValue = Buffer.alloc(16);
      leaseValue.writeBigUInt64BE(60n, 0);
      b.put("lease", u64(0x1234n), leaseValue);
      const checkpointed = Buffer.alloc(16);
      checkpointed.writeBigUInt64BE(300n, 0);
      checkpointed.writeBigUInt64BE(120n, 8);
      b.put("lease", u64(0x7fff_0000_0000_0001n), checkpointed);
      const m1 = { id: 0xb0259216f769d4e8n, name: "s1", peerUrls: ["http://127.0.0.1:2380"], clientUrls: ["http://127.0.0.1:2379"], isLearner: false };
      const m2 = { id: 0x2an, name: "", peerUrls: ["http://10.0.0.2:2380", "http://10.0.0.3:2380"], clientUrls: [], isLearner: true };
      b.put("members", Buffer.from(m1.id.toString(16)), encodeMember(m1));
      b.put("members", Buffer.from(m2.id.toString(16)), encodeMember(m2));
      b.put("members", Buffer.from("removed/abc"), Buffer.from("1"));
      b.put("members", Buffer.from("clusterVersion"), Buffer.from("3.4.0"));
      const alarmKey = Buffer.alloc(9);
      alarmKey.writeBigUInt64BE(0xb0259216f769d4e8n);
      alarmKey[8] = 1;
      b.put("alarm", alarmKey, Buffer.alloc(0));
      b.setConsistentIndex(42, 3);
      await backend.write(b);

      const file = path.join(dir, "out1.db");
      const info = await writeEtcdSnapshotFile(backend, file);
      const r = BboltReader.open(file);
      try {
        expect(r.check()).toEqual([]);
        expect(info.sizeBytes).toBe(r.fileBytes);
        const d = r.dump();
        expect([...d.keys()]).toEqual(["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"]);
        const text = (name: string): Array<[string, string]> => d.get(name)!.map(([k, v]) => [k.toString("latin1"), v.toString("latin1")]);
        const hex = (name: string): Array<[string, string]> => d.get(name)!.map(([k, v]) => [k.toString("hex"), v.toString("hex")]);

        expect(d.get("key")!.length).toBe(keys);
        expect(d.get("key")![keys - 1]![1].toString()).toBe(`kv-${keys + 1}`);
        expect(text("meta")).toEqual([
          ["consistent_index", encodeUint64(40).toString("latin1")],
          ["finishedCompactRev", encodeRevisionValue(7).toString("latin1")],
          ["scheduledCompactRev", encodeRevisionValue(7).toString("latin1")],
        ]);
        // leasepb.Lease{ID: 0x1234, TTL: 60}; {ID, TTL: 300, RemainingTTL: 120}.
        expect(hex("lease")).toEqual([
          ["0000000000001234", "08" + varintHex(0x1234n) + "10" + varintHex(60n)],
          ["7fff000000000001", "08" + varintHex(0x7fff_0000_0000_0001n) + "10" + varintHex(300n) + "18" + varintHex(120n)],
        ]);
        expect(text("members")).toEqual([
          ["2a", '{"id":42,"peerURLs":["http://10.0.0.2:2380","http://10.0.0.3:2380"],"isLearner":true}'],
          ["b0259216f769d4e8", '{"id":12692711752151454952,"peerURLs":["http://127.0.0.1:2380"],"name":"s1","clientURLs":["http://127.0.0.1:2379"]}'],
        ]);
        expect(text("members_removed")).toEqual([["abc", "removed"]]);
        expect(text("cluster")).toEqual([["clusterVersion", "3.4.0"]]);
        // etcdserverpb.AlarmMember{MemberID, Alarm: NOSPACE} as the key, nothing as the value.
        expect(hex("alarm")).toEqual([["08" + varintHex(0xb0259216f769d4e8n) + "1001", ""]]);
        expect(hex("auth")).toEqual([[Buffer.from("authRevision").toString("hex"), "0000000000000001"]]);
        expect(d.get("authUsers")).toEqual([]);
        expect(d.get("authRoles")).toEqual([]);
      } finally {
        r.close();
      }
    } finally {
      await backend.close();
    }
  });

  it("a store that never changed a key has no consistent_index, like a fresh etcd", async () => {
    const backend = await Backend.open(path.join(dir, "db2"));
    try {
      const b = backend.batch();
      b.put("members", Buffer.from("clusterVersion"), Buffer.from("3.4.0"));
      b.setConsistentIndex(4, 2);
      await backend.write(b);
      const file = path.join(dir, "out2.db");
      await writeEtcdSnapshotFile(backend, file);
      const r = BboltReader.open(file);
      try {
        expect(r.check()).toEqual([]);
        expect(r.entries("meta")).toEqual([]);
        expect(r.entries("key")).toEqual([]);
        expect(r.entries("lease")).toEqual([]);
      } finally {
        r.close();
      }
    } finally {
      await backend.close();
    }
  });

  it("stops when aborted while reading the backend", async () => {
    const backend = await Backend.open(path.join(dir, "db3"));
    try {
      const b = backend.batch();
      for (let rev = 2; rev < 3000; rev++) b.putPrefixed(Buffer.concat([Buffer.from([0x01]), revisionKey(rev, 0, false).subarray(1)]), Buffer.from("v"));
      await backend.write(b);
      await expect(writeEtcdSnapshotFile(backend, path.join(dir, "out3.db"), { aborted: () => true })).rejects.toBeInstanceOf(SnapshotAbortedError);
    } finally {
      await backend.close();
    }
  });

  it("writes strings as Go's encoding/json does", () => {
    expect(goJsonString('a<b>&"\\\n\t\u0001\u2028é')).toBe('"a\\u003cb\\u003e\\u0026\\"\\\\\\n\\t\\u0001\\u2028é"');
    expect(encodeEtcdMemberJson({ id: 1n, name: "", peerUrls: [], clientUrls: [], isLearner: false }).toString()).toBe('{"id":1,"peerURLs":[]}');
  });
});
