/**
 * End to end on a real single-node Kubernetes (node mode: pods run in containerd, cluster DNS,
 * PVCs), with etcd-ts members from an image laid out as the Dockerfile's: `kubectl apply` an
 * EtcdCluster of 3, wait Available, write with etcdctl to a member's pod IP (10.244.0.0/24 is
 * routable from the host), scale to 5 and back to 3, delete a pod (the same member comes back
 * with its data), delete a member's pod and PVC (the member is removed and re-added as a
 * learner under the same name), and check status and events along the way.
 *
 * Long (node up ~25 s, the scenario a few minutes, node down ~25 s) and needs root and the whole
 * node: runs only with KUBE_E2E=1. Timings are printed.
 */
import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { NodeEnv, etcdctlAt, nodeSkipReason, waitFor } from "./kube-node-env.js";

const skip = nodeSkipReason("kube-node.test.ts", "the end-to-end scenario");

describe.skipIf(skip !== undefined)("operator end to end on a real node", () => {
  const env = new NodeEnv({ namespace: "e2e" });
  const etcdctl = (ip: string, args: string[]) => etcdctlAt(ip, args);
  const podIP = (name: string) => env.podIP(name);
  const waitMembers = (names: string[], timeoutMs: number) => env.waitMembers("e", names, timeoutMs);
  const timed = <T>(name: string, fn: () => Promise<T>) => env.timed(name, fn);

  beforeAll(() => env.up(), 600_000);
  afterAll(() => env.down("kube-node"), 600_000);

  it("creates 3, scales to 5 and back to 3, restarts a pod, replaces a lost member", async () => {
    await env.applyEtcd("EtcdCluster", "e", { size: 3, imagePullPolicy: "Never", storage: { size: "64Mi" } });
    const s3 = await timed("create 3", () => waitMembers(["e-0", "e-1", "e-2"], 240_000));
    expect(s3.leader).toMatch(/^e-[012]$/);
    expect(s3.observedGeneration).toBe(1);
    expect(s3.members.every((m: any) => m.id && m.revision >= 1 && m.dbSize > 0)).toBe(true);

    // Pod IPs on the node's bridge are reachable from the host.
    const ip0 = await podIP("e-0");
    expect(ip0).toMatch(/^10\.244\.0\./);
    await etcdctl(ip0, ["put", "k1", "v1"]);
    expect(await etcdctl(await podIP("e-2"), ["get", "k1", "--print-value-only"])).toBe("v1\n");
    const idsBefore = Object.fromEntries(s3.members.map((m: any) => [m.name, m.id]));

    // Scale out to 5: learner-first, one at a time.
    await env.kubectl(["patch", "etcdcluster", "e", "--type=merge", "-p", '{"spec":{"size":5}}']);
    const s5 = await timed("scale 3->5", () => waitMembers(["e-0", "e-1", "e-2", "e-3", "e-4"], 300_000));
    expect(s5.observedGeneration).toBe(2);
    expect((await env.get("poddisruptionbudgets.v1beta1.policy e")).spec.minAvailable).toBe(3);
    expect(await etcdctl(await podIP("e-4"), ["get", "k1", "--print-value-only", "--consistency=s"])).toBe("v1\n");

    // Scale in to 3, from the highest member.
    await env.kubectl(["patch", "etcdcluster", "e", "--type=merge", "-p", '{"spec":{"size":3}}']);
    await timed("scale 5->3", () => waitMembers(["e-0", "e-1", "e-2"], 240_000));
    await waitFor(
      "e-3 and e-4 pods and PVCs gone",
      async () => {
        const l = await env.get("pods,pvc -l etcd.etcd-ts.io/cluster=e");
        const names = l.items.filter((i: any) => !i.metadata.deletionTimestamp).map((i: any) => i.metadata.name).sort();
        return JSON.stringify(names) === JSON.stringify(["data-e-0", "data-e-1", "data-e-2", "e-0", "e-1", "e-2"]);
      },
      120_000,
    );
    expect((await env.get("poddisruptionbudgets.v1beta1.policy e")).spec.minAvailable).toBe(2);

    // A deleted pod comes back as the same member, with its data.
    await env.kubectl(["delete", "pod", "e-2", "--wait=true"]);
    const sRestart = await timed("pod restart", () => waitMembers(["e-0", "e-1", "e-2"], 180_000));
    expect(sRestart.members.find((m: any) => m.name === "e-2").id).toBe(idsBefore["e-2"]);
    expect(await etcdctl(await podIP("e-2"), ["get", "k1", "--print-value-only", "--consistency=s"])).toBe("v1\n");

    // A member whose pod and volume are deleted is removed and re-added as a learner, same name.
    await env.kubectl(["delete", "pvc", "data-e-1", "--wait=false"]);
    await env.kubectl(["delete", "pod", "e-1", "--wait=false"]);
    const sRepair = await timed("repair", () =>
      waitFor<any>(
        "e-1 replaced",
        async () => {
          const s = await waitMembers(["e-0", "e-1", "e-2"], 1000).catch(() => undefined);
          return s && s.members.find((m: any) => m.name === "e-1").id !== idsBefore["e-1"] ? s : undefined;
        },
        300_000,
        2000,
      ),
    );
    expect(sRepair.members.map((m: any) => m.name)).toEqual(["e-0", "e-1", "e-2"]);
    expect(await etcdctl(await podIP("e-1"), ["get", "k1", "--print-value-only", "--consistency=s"])).toBe("v1\n");
    await etcdctl(await podIP("e-1"), ["put", "k2", "v2"]);

    const events = await env.get("events --field-selector involvedObject.kind=EtcdCluster");
    const reasons = await env.eventReasons();
    for (const r of ["Bootstrap", "AddLearner", "Promote", "RemoveMember", "CreatePod"]) expect(reasons.has(r), r).toBe(true);
    const removals = events.items.filter((e: any) => e.reason === "RemoveMember").map((e: any) => e.message);
    expect(removals.some((m: string) => /remove e-1 \(repair\)/.test(m))).toBe(true);
    expect(removals.some((m: string) => /remove e-4 \(scale-in\)/.test(m))).toBe(true);
  }, 1_500_000);
});
