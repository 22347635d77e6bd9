/**
 * LeaseKeepAlive streams as clients see them, differentially: the same conversations (grpc-js's
 * generated client) go to a real etcd 3.4 and to etcd-ts side by side, and every response (ID,
 * TTL, header) and the stream's final status are recorded; the transcripts must be equal. The
 * conversations are etcd's clients' own: KeepAliveOnce (one request, one response, cancel) for a
 * granted lease, an unknown one and a revoked one, many of them in a row, and one stream carrying
 * several requests then half-closed, or half-closed at once.
 *
 * Both servers have the same identity (DIFF_IDENTITY); revisions agree because both run the same
 * requests in the same order. `SHOW_TRANSCRIPTS=1` prints etcd's transcript.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials, Metadata, type ServiceError, type StatusObject } from "@grpc/grpc-js";
import { LeaseClient, type LeaseKeepAliveResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { DIFF_IDENTITY } from "../etcdctl/diff-suite.js";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { closeSides, compareTranscripts } from "./sides.js";

const reference = referenceEtcdPath();

function render(value: unknown): string {
  return JSON.stringify(value, (k, x: unknown) => {
    if (k === "memberId" || k === "clusterId") return "<id>";
    if (typeof x === "bigint") return x.toString();
    return x;
  });
}

interface Conversation {
  responses: LeaseKeepAliveResponse[];
  status: { code: number; details: string };
}

/** One server, its client and its transcript. */
class Side {
  readonly log: string[] = [];
  readonly lease: LeaseClient;

  constructor(readonly name: string, readonly member: Member) {
    this.lease = new LeaseClient(`127.0.0.1:${member.clientPort}`, credentials.createInsecure());
  }

  close(): void {
    this.lease.close();
  }

  /**
   * One stream: writes `ids` (all at once), then cancels once `ids.length` responses arrived
   * ("cancel", etcd's KeepAliveOnce), or half-closes right after the writes ("end").
   */
  converse(ids: bigint[], how: "cancel" | "end"): Promise<Conversation> {
    return new Promise((resolve) => {
      const call = this.lease.leaseKeepAlive(new Metadata());
      const responses: LeaseKeepAliveResponse[] = [];
      call.on("data", (r: LeaseKeepAliveResponse) => {
        responses.push(r);
        if (how === "cancel" && responses.length === ids.length) call.cancel();
      });
      call.on("error", (_e: ServiceError) => undefined);
      // An OK status's message is the gRPC library's (grpc-go sends none, grpc-js "OK"); clients ignore it.
      call.on("status", (s: StatusObject) => resolve({ responses, status: { code: s.code, details: s.code === 0 ? "" : s.details } }));
      for (const id of ids) call.write({ ID: id });
      if (how === "end") call.end();
    });
  }

  async record(label: string, ids: bigint[], how: "cancel" | "end"): Promise<Conversation> {
    const c = await this.converse(ids, how);
    this.log.push(`${label}: ${render(c)}`);
    return c;
  }

  unary<Req, Res>(fn: (req: Req, cb: (err: ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => fn(req, (err, res) => (err ? reject(err) : resolve(res))));
  }
}

describe.skipIf(reference === undefined)("LeaseKeepAlive streams against etcd 3.4", () => {
  let sides: Side[] = [];

  beforeAll(async () => {
    const [ref, cand] = await Promise.all([
      startMember({ binary: serverBinaryFromSpec(reference), ...DIFF_IDENTITY }),
      startMember({ binary: etcdTsBinary(), ...DIFF_IDENTITY }),
    ]);
    sides = [new Side("etcd", ref), new Side("etcd-ts", cand)];
  });

  afterAll(() => closeSides(sides));

  const compare = (script: (s: Side) => Promise<void>): Promise<void> => compareTranscripts(sides, script);

  it("KeepAliveOnce of a granted, an unknown and a revoked lease; many in a row", async () => {
    await compare(async (s) => {
      const l = s.lease;
      await s.unary(l.leaseGrant.bind(l), { TTL: 60n, ID: 7001n });
      await s.unary(l.leaseGrant.bind(l), { TTL: 30n, ID: 7002n });
      await s.record("once granted", [7001n], "cancel");
      await s.record("once unknown", [424242n], "cancel");
      await s.record("once zero", [0n], "cancel");
      await s.unary(l.leaseRevoke.bind(l), { ID: 7002n });
      await s.record("once revoked", [7002n], "cancel");
      const many: string[] = [];
      for (let i = 0; i < 100; i++) {
        const c = await s.converse([i % 4 === 3 ? 99n : 7001n], "cancel");
        many.push(`${c.responses.map((r) => `${r.ID}:${r.TTL}`).join(",")}/${c.status.code}`);
      }
      s.log.push(`100 in a row: ${many.join(" ")}`);
    });
  });

  it("one stream, several requests, then half-close; half-close at once", async () => {
    await compare(async (s) => {
      const l = s.lease;
      await s.unary(l.leaseGrant.bind(l), { TTL: 45n, ID: 7101n });
      await s.record("three then half-close", [7101n, 5n, 7101n], "end");
      await s.record("half-close at once", [], "end");
      await s.record("ten then cancel", Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? 7101n : BigInt(i))), "cancel");
      await s.unary(l.leaseRevoke.bind(l), { ID: 7101n });
    });
  });
});
