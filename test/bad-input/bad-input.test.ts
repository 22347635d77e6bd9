/**
 * Bad input never takes the server down and never loses acknowledged data: malformed protobuf on
 * every unary method, oversized requests, inverted and odd key ranges, out-of-range enums and
 * revisions, garbage on the watch and keepalive streams, and a non-gRPC, non-HTTP byte stream on
 * the client port. After each barrage the member still answers and still holds every
 * acknowledged write. Seeded (SEED=, prints seed=N on failure).
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { binaryUnderTest, startMember, type Member } from "../harness/member.js";
import { killAllChildren } from "../harness/processes.js";
import { GrpcError } from "../harness/grpc-lite.js";
import { seededUniform as rng, testSeed } from "../harness/seeded-random.js";
import { RangeRequest, PutRequest, TxnRequest, Compare, Compare_CompareTarget, Compare_CompareResult } from "@etcd-ts/proto/etcdserverpb/rpc";

const SEED = testSeed();


const UNARY_METHODS = [
  "/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn",
  "/etcdserverpb.KV/Compact", "/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseRevoke",
  "/etcdserverpb.Lease/LeaseTimeToLive", "/etcdserverpb.Lease/LeaseLeases", "/etcdserverpb.Cluster/MemberList",
  "/etcdserverpb.Cluster/MemberAdd", "/etcdserverpb.Cluster/MemberRemove", "/etcdserverpb.Maintenance/Status",
  "/etcdserverpb.Maintenance/HashKV", "/etcdserverpb.Maintenance/Alarm",
];

describe(`bad input (seed=${SEED})`, () => {
  let member: Member;
  const acknowledged = new Map<string, string>();

  beforeAll(async () => {
    member = await startMember({ binary: binaryUnderTest(), name: "bad-input" });
    const c = member.grpc();
    for (let i = 0; i < 20; i++) {
      await c.put(`ack/${i}`, `v${i}`);
      acknowledged.set(`ack/${i}`, `v${i}`);
    }
  });

  afterAll(async () => {
    await member?.destroy();
    await killAllChildren();
  });

  async function assertHealthy(): Promise<void> {
    expect(member.running, `seed=${SEED}: server exited`).toBe(true);
    const c = member.grpc();
    const r = await c.range("ack/", { rangeEnd: "ack0" });
    const got = new Map(r.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
    expect(got, `seed=${SEED}: acknowledged data changed`).toEqual(acknowledged);
  }

  it("malformed protobuf on every unary method gets a gRPC error, not a crash", async () => {
    const rand = rng(SEED);
    const c = member.grpc();
    for (const method of UNARY_METHODS) {
      for (let i = 0; i < 8; i++) {
        const len = 2 + Math.floor(rand() * 64);
        const junk = Buffer.alloc(len);
        for (let j = 0; j < len; j++) junk[j] = Math.floor(rand() * 256);
        // Field 1 as a length-delimited field longer than the message: always invalid.
        if (i === 0) junk.set([0x0a, 0x7f], 0);
        try {
          await c.unary(method, junk);
        } catch (err) {
          expect(err, `seed=${SEED} ${method}`).toBeInstanceOf(GrpcError);
        }
      }
    }
    await assertHealthy();
  });

  it("oversized requests are refused with etcd's errors", async () => {
    const c = member.grpc();
    // Above --max-request-bytes (1.5 MiB) but within the gRPC limit: etcd's own check.
    const big = PutRequest.encode(PutRequest.fromPartial({ key: Buffer.from("big"), value: Buffer.alloc(1_600_000, 1) })).finish();
    await expect(c.unary("/etcdserverpb.KV/Put", Buffer.from(big))).rejects.toMatchObject({ code: 3, details: "etcdserver: request is too large" });
    // Above the gRPC receive limit (max-request-bytes + 512 KiB).
    const huge = PutRequest.encode(PutRequest.fromPartial({ key: Buffer.from("huge"), value: Buffer.alloc(2_200_000, 1) })).finish();
    await expect(c.unary("/etcdserverpb.KV/Put", Buffer.from(huge))).rejects.toMatchObject({ code: 8 });
    await assertHealthy();
  });

  it("inverted, empty and odd ranges, bad enums and revisions", async () => {
    const c = member.grpc();
    const range = (req: Partial<RangeRequest>) => c.unary("/etcdserverpb.KV/Range", Buffer.from(RangeRequest.encode(RangeRequest.fromPartial(req)).finish()));
    // range_end below key: an empty result, as etcd gives.
    const inverted = await range({ key: Buffer.from("z"), rangeEnd: Buffer.from("a") });
    expect(inverted.length).toBeGreaterThan(0);
    await expect(range({ key: Buffer.alloc(0) })).rejects.toMatchObject({ details: "etcdserver: key is not provided" });
    // etcd 3.4 accepts an unknown sort order and does not sort.
    await range({ key: Buffer.from("a"), sortOrder: 7 as never, sortTarget: 9 as never });
    await expect(range({ key: Buffer.from("a"), revision: 1n << 40n })).rejects.toMatchObject({
      code: 11, details: "etcdserver: mvcc: required revision is a future revision",
    });
    await range({ key: Buffer.from([0]), rangeEnd: Buffer.from([0]), limit: -5n });
    await range({ key: Buffer.from([0xff, 0xff]), rangeEnd: Buffer.from([0]), revision: -3n });
    // A txn that compares with an unknown target and result.
    const txn = TxnRequest.fromPartial({
      compare: [Compare.fromPartial({ key: Buffer.from("ack/1"), target: 9 as Compare_CompareTarget, result: 9 as Compare_CompareResult })],
    });
    await c.unary("/etcdserverpb.KV/Txn", Buffer.from(TxnRequest.encode(txn).finish()));
    await assertHealthy();
  });

  it("garbage on the client port (neither gRPC nor HTTP) is dropped", async () => {
    const rand = rng(SEED + 1);
    for (let i = 0; i < 10; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(member.clientPort, "127.0.0.1", () => {
          const junk = Buffer.alloc(1 + Math.floor(rand() * 4096));
          for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(rand() * 256);
          // Half of them start like HTTP/2 and then go wrong.
          if (i % 2 === 0) Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").copy(junk);
          s.end(junk);
        });
        s.on("error", () => resolve());
        s.on("close", () => resolve());
        s.setTimeout(300, () => s.destroy());
      });
    }
    await assertHealthy();
  });
});
