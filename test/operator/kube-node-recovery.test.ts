/**
 * End to end on a real node: permanent loss of quorum and corrupt data.
 *
 * 1. An EtcdCluster of 3 loses two members for good (their PVCs and pods deleted). With recovery
 *    off, the operator reports Degraded/QuorumLost and changes nothing: the lost members are not
 *    recreated, the survivor keeps running with its three-member list.
 * 2. Recovery is then enabled (afterSeconds 30): the operator restarts the survivor once with
 *    --force-new-cluster, replaces that pod by a normal one when it serves alone, and re-adds the
 *    others learner-first under their names; the data written before the loss is there, the
 *    survivor keeps its member ID and the cluster ID.
 * 3. A member's LevelDB files are damaged on its hostPath volume and its pod deleted: the new pod
 *    refuses the data (its termination message says so); the operator removes the member and
 *    re-adds it as a learner under the same name.
 *
 * Needs the node: runs only with KUBE_E2E=1 (`npm run test:kube-e2e -- test/operator/kube-node-recovery.test.ts`).
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeEnv, etcdctlAt, nodeSkipReason, waitFor } from "./kube-node-env.js";

const skip = nodeSkipReason("kube-node-recovery.test.ts", "the quorum-loss and corruption scenarios");

/** Flips one byte near the start of every LevelDB table and log file (inside the first block or record). */
function damageLevelDb(dir: string): string[] {
  const hit: string[] = [];
  for (const f of readdirSync(dir)) {
    if (!/^[0-9]+\.(ldb|log)$/.test(f)) continue;
    const p = path.join(dir, f);
    if (statSync(p).size < 64) continue;
    const buf = readFileSync(p);
    buf[10] = buf[10]! ^ 0xff;
    writeFileSync(p, buf);
    hit.push(f);
  }
  return hit;
}

describe.skipIf(skip !== undefined)("operator end to end: quorum loss and corrupt members", () => {
  const env = new NodeEnv({ namespace: "e2e-recovery" });
  const names = ["q-0", "q-1", "q-2"];
  const status = async () => (await env.get("etcdcluster q")).status;
  const degradedReason = (s: any) => s?.conditions?.find((c: any) => c.type === "Degraded" && c.status === "True")?.reason;

  beforeAll(() => env.up(), 600_000);
  afterAll(() => env.down("kube-node-recovery"), 600_000);

  it("left alone when recovery is off; recovered from the survivor when enabled; a corrupt member replaced", async () => {
    await env.applyEtcd("EtcdCluster", "q", { size: 3, imagePullPolicy: "Never", storage: { size: "64Mi" } });
    const s3 = await env.timed("create 3", () => env.waitMembers("q", names, 240_000));
    const ids = Object.fromEntries(s3.members.map((m: any) => [m.name, m.id]));
    const ip0 = await env.podIP("q-0");
    for (let i = 0; i < 20; i++) await etcdctlAt(ip0, ["put", `k${i}`, `v${i}`]);
    await waitFor("q-1 and q-2 caught up", async () => (await status()).members?.every((m: any) => m.revision >= 21), 60_000, 1000);

    // 1. Two members lost for good at once (the operator paused meanwhile, or it would repair the
    // first before the second goes); recovery off.
    await env.kubectl(["patch", "etcdcluster", "q", "--type=merge", "-p", '{"spec":{"paused":true}}']);
    await waitFor("paused", async () => (await status())?.phase === "Paused", 60_000, 500);
    for (const n of ["q-1", "q-2"]) await env.kubectl(["delete", "pvc", `data-${n}`, "--wait=false"]);
    for (const n of ["q-1", "q-2"]) await env.kubectl(["delete", "pod", n, "--wait=true"]);
    await env.kubectl(["patch", "etcdcluster", "q", "--type=merge", "-p", '{"spec":{"paused":false}}']);
    const lost = await env.timed("quorum lost reported", () =>
      waitFor<any>("Degraded/QuorumLost", async () => {
        const s = await status();
        return degradedReason(s) === "QuorumLost" && s.quorumLoss?.phase === "Lost" ? s : undefined;
      }, 120_000, 1000),
    );
    expect(lost.quorumLoss.lostMembers).toEqual(["q-1", "q-2"]);
    expect(lost.conditions.find((c: any) => c.type === "Degraded").message).toMatch(/spec\.recovery\.quorumLoss\.enabled/);
    // Nothing is changed while it stays off.
    await new Promise((r) => setTimeout(r, 20_000));
    const pods = (await env.podsOf("q")).filter((p: any) => !p.metadata.deletionTimestamp).map((p: any) => p.metadata.name);
    expect(pods).toEqual(["q-0"]);
    expect(degradedReason(await status())).toBe("QuorumLost");
    const list = JSON.parse(await etcdctlAt(ip0, ["member", "list", "-w", "json"]));
    expect(list.members.length).toBe(3);
    expect((await env.eventReasons()).has("QuorumLost")).toBe(true);

    // 2. Enabled: the survivor restarts alone, then the others are re-added.
    await env.kubectl(["patch", "etcdcluster", "q", "--type=merge", "-p", JSON.stringify({ spec: { recovery: { quorumLoss: { enabled: true, afterSeconds: 30 } } } })]);
    const recovered = await env.timed("recovery", () => env.waitMembers("q", names, 600_000, (s) => s.quorumLoss === undefined));
    expect(recovered.members.find((m: any) => m.name === "q-0").id).toBe(ids["q-0"]);
    expect(recovered.clusterID).toBe(s3.clusterID);
    for (const n of ["q-1", "q-2"]) expect(recovered.members.find((m: any) => m.name === n).id).not.toBe(ids[n]);
    for (const n of names) expect(await etcdctlAt(await env.podIP(n), ["get", "k19", "--print-value-only", "--consistency=s"])).toBe("v19\n");
    await etcdctlAt(await env.podIP("q-1"), ["put", "after", "recovery"]);
    const q0 = await env.get("pod q-0");
    expect(q0.spec.containers[0].command).not.toContain("--force-new-cluster");
    const reasons = await env.eventReasons();
    for (const r of ["ForceNewCluster", "FinishForceNewCluster", "AddLearner", "Promote"]) expect(reasons.has(r), r).toBe(true);

    // 3. q-2's data damaged on its volume; its pod restarts on it.
    const before = (await status()).members.find((m: any) => m.name === "q-2").id;
    const pvc = await env.get("pvc data-q-2");
    const pv = await env.get(`pv ${pvc.spec.volumeName}`);
    const dbDir = path.join(pv.spec.hostPath.path, "data", "member", "snap", "db");
    const damaged = damageLevelDb(dbDir);
    expect(damaged.length).toBeGreaterThan(0);
    await env.kubectl(["delete", "pod", "q-2", "--grace-period=0", "--force"]);
    const repaired = await env.timed("corrupt member replaced", () =>
      waitFor<any>("q-2 replaced", async () => {
        const s = await env.waitMembers("q", names, 1000).catch(() => undefined);
        return s && s.members.find((m: any) => m.name === "q-2").id !== before ? s : undefined;
      }, 480_000, 2000),
    );
    expect(repaired.members.map((m: any) => m.name)).toEqual(names);
    expect(await etcdctlAt(await env.podIP("q-2"), ["get", "after", "--print-value-only", "--consistency=s"])).toBe("recovery\n");
    const events = await env.get("events --field-selector involvedObject.kind=EtcdCluster");
    const removals = events.items.filter((e: any) => e.reason === "RemoveMember").map((e: any) => e.message);
    expect(removals.some((m: string) => /remove q-2 \(corrupt/.test(m)), removals.join("\n")).toBe(true);
  }, 1_800_000);
});
