/**
 * The Maintenance.Snapshot stream itself, read with a gRPC client from etcd-ts and from real etcd
 * 3.4: blobs of 32 KiB (the last file blob shorter), `remaining_bytes` counting down to 0 with
 * the file, then one message carrying the sha256 of everything before it; the file is a bbolt
 * database whose size is a multiple of 4096. etcd-ts also puts a header with the store revision
 * on the first message (etcd 3.4 sends none).
 */
import * as grpc from "@grpc/grpc-js";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MaintenanceClient, type SnapshotResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { BboltReader } from "../../server/src/mvcc/backend/bbolt-reader.js";
import { Member, binaryUnderTest, referenceEtcdPath, startMember, type ServerBinary } from "../harness/member.js";

const reference = referenceEtcdPath();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "snapshot-stream-"));

function readSnapshot(url: string): Promise<SnapshotResponse[]> {
  const client = new MaintenanceClient(url.replace("http://", ""), grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
  });
  return new Promise((resolve, reject) => {
    const out: SnapshotResponse[] = [];
    const call = client.snapshot({});
    const timer = setTimeout(() => call.cancel(), 30_000);
    call.on("data", (m: SnapshotResponse) => out.push(m));
    call.on("error", (e) => {
      clearTimeout(timer);
      client.close();
      reject(e);
    });
    call.on("end", () => {
      clearTimeout(timer);
      client.close();
      resolve(out);
    });
  });
}

describe("Maintenance.Snapshot stream", () => {
  const members: Array<[string, Member]> = [];

  beforeAll(async () => {
    const binaries: Array<[string, ServerBinary]> = [["etcd-ts", binaryUnderTest()]];
    if (reference !== undefined) binaries.push(["etcd", { kind: "etcd", command: reference, prefixArgs: [] }]);
    for (const [label, binary] of binaries) {
      const m = await startMember({ binary, name: "stream" });
      const g = m.grpc();
      for (let i = 0; i < 40; i++) await g.put(`s/${i}`, "v".repeat(5000 + i));
      members.push([label, m]);
    }
  }, 120_000);

  afterAll(async () => {
    for (const [, m] of members) await m.destroy();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("sends the file in 32 KiB blobs counting down, then its sha256", async () => {
    for (const [label, m] of members) {
      const messages = await readSnapshot(m.clientUrl);
      expect(messages.length, label).toBeGreaterThan(2);
      const fileMessages = messages.slice(0, -1);
      const last = messages[messages.length - 1]!;
      const file = Buffer.concat(fileMessages.map((x) => x.blob));
      expect(file.length % 4096, label).toBe(0);
      let sent = 0;
      fileMessages.forEach((x, i) => {
        if (i < fileMessages.length - 1) expect(x.blob.length, `${label} blob ${i}`).toBe(32 * 1024);
        sent += x.blob.length;
        expect(x.remainingBytes, `${label} blob ${i}`).toBe(BigInt(file.length - sent));
      });
      expect(last.remainingBytes, label).toBe(0n);
      expect(last.blob.toString("hex"), label).toBe(createHash("sha256").update(file).digest("hex"));
      if (label === "etcd-ts") {
        const rev = (await m.grpc().range("s/0")).header.revision;
        expect(fileMessages[0]!.header?.revision, label).toBe(rev);
        expect(fileMessages.slice(1).every((x) => x.header === undefined), label).toBe(true);
      }
      const f = path.join(scratch, `${label}.db`);
      fs.writeFileSync(f, file);
      const r = BboltReader.open(f);
      try {
        expect(r.check(), label).toEqual([]);
        expect(r.entries("key")?.length, label).toBe(40);
      } finally {
        r.close();
      }
    }
  }, 60_000);
});
