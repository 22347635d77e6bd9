/**
 * End to end on a real node (node mode), membership sizes and client availability:
 *
 * - an EtcdCluster of 1 scaled 1 -> 3 -> 5 -> 3 -> 1 while a client keeps writing to whichever
 *   members' pods exist: every step keeps quorum, so writes keep succeeding, or fail only for
 *   moments (a leader moved away, a member's endpoint going away); no run of failures lasts
 *   longer than an election's worth of seconds, and every write acknowledged is there at the end;
 * - an EtcdCluster created at 5 comes up with five healthy voters and one leader.
 *
 * Runs only with KUBE_E2E=1 (`npm run test:kube-e2e`); see kube-node-env.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientWriter, NodeEnv, etcdctlAt, nodeSkipReason, waitFor } from "./kube-node-env.js";

const skip = nodeSkipReason("kube-node-scale.test.ts", "the scaling scenarios");

/** Longest run of failed writes tolerated, in ms: an election plus a client's redial, on a loaded 2-core node. */
const MAX_OUTAGE_MS = 15_000;

describe.skipIf(skip !== undefined)("scaling 1 -> 3 -> 5 -> 3 -> 1 under writes, and a cluster of 5, on a real node", () => {
  const env = new NodeEnv({ namespace: "e2e-scale" });
  beforeAll(() => env.up(), 600_000);
  afterAll(() => env.down("kube-node-scale"), 600_000);

  const names = (c: string, n: number) => Array.from({ length: n }, (_, i) => `${c}-${i}`);
  const resize = (c: string, size: number) => env.kubectl(["patch", "etcdcluster", c, "--type=merge", "-p", JSON.stringify({ spec: { size } })]);

  it("scales 1 -> 3 -> 5 -> 3 -> 1 while a client writes; nothing acknowledged is lost", async () => {
    await env.applyEtcd("EtcdCluster", "s", { size: 1, imagePullPolicy: "Never", storage: { size: "64Mi" } });
    const s1 = await env.timed("create 1", () => env.waitMembers("s", ["s-0"], 240_000));
    expect(s1.leader).toBe("s-0");

    const writer = await new ClientWriter(env, "s").start();

    try {
      for (const [from, to] of [[1, 3], [3, 5], [5, 3], [3, 1]] as const) {
        const before = writer.acked.length;
        await resize("s", to);
        const s = await env.timed(`scale ${from}->${to}`, () => env.waitMembers("s", names("s", to), 360_000));
        expect(s.size).toBe(to);
        // The writer made progress through the step.
        await waitFor(`writes after scaling to ${to}`, async () => writer.acked.length > before + 3, 60_000, 500);
        if (to < from) {
          await waitFor(
            `pods and PVCs of removed members gone (${to})`,
            async () => {
              const l = await env.get("pods,pvc -l etcd.etcd-ts.io/cluster=s");
              return l.items.filter((i: any) => !i.metadata.deletionTimestamp).length === 2 * to;
            },
            180_000,
            1000,
          );
        }
      }
    } finally {
      await writer.stop();
    }
    console.log(`kube-node-scale: ${writer.summary()}`);
    expect(writer.acked.length).toBeGreaterThan(20);
    expect(writer.longestOutageMs).toBeLessThan(MAX_OUTAGE_MS);
    // Every acknowledged write is on the one member left.
    expect(await writer.lost()).toEqual([]);

    const reasons = await env.eventReasons();
    for (const r of ["Bootstrap", "AddLearner", "Promote", "RemoveMember"]) expect(reasons.has(r), r).toBe(true);
  }, 2_400_000);

  it("creates a cluster of 5", async () => {
    await env.applyEtcd("EtcdCluster", "f", { size: 5, imagePullPolicy: "Never", storage: { size: "64Mi" } });
    const s = await env.timed("create 5", () => env.waitMembers("f", names("f", 5), 360_000));
    expect(s.leader).toMatch(/^f-[0-4]$/);
    expect(new Set(s.members.map((m: any) => m.id)).size).toBe(5);
    expect((await env.get("poddisruptionbudgets.v1beta1.policy f")).spec.minAvailable).toBe(3);
    await etcdctlAt(await env.podIP("f-4"), ["put", "five", "yes"]);
    expect(await etcdctlAt(await env.podIP("f-0"), ["get", "five", "--print-value-only"])).toBe("yes\n");
    await env.kubectl(["delete", "etcdcluster", "f", "--wait=false"]);
  }, 900_000);
});
