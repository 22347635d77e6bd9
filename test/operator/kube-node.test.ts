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
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { startOperator, type RunningOperator } from "../../operator/src/main.js";
import { chartDir } from "./chart-render.js";
import { appCmd, assembleImage } from "./image.js";
import { kubeBin, kubeMissing, kubeTools, kubectl, kubectlJson, waitFor } from "./kube.js";

const run = promisify(execFile);
const enabled = process.env.KUBE_E2E === "1";
const missing = kubeMissing();
if (!enabled) console.warn("kube-node.test.ts skipped: set KUBE_E2E=1 to run the end-to-end scenario on a real node");
else if (missing) console.warn(`kube-node.test.ts skipped: ${missing}`);

const NS = "e2e";
const IMAGE = "localhost/etcd-ts:dev";
const timings: Record<string, number> = {};

async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    timings[name] = (Date.now() - t0) / 1000;
  }
}

describe.skipIf(!enabled || missing !== undefined)("operator end to end on a real node", () => {
  let kc = "";
  let op: RunningOperator | undefined;

  const etcdctl = async (ip: string, args: string[]) =>
    (await run("etcdctl", ["--endpoints", `http://${ip}:2379`, "--command-timeout=10s", ...args], { env: { ...process.env, ETCDCTL_API: "3" } })).stdout;
  const getCluster = (name: string) => kubectlJson(kc, ["-n", NS, "get", "etcdcluster", name]);
  const podIP = async (name: string) => (await kubectlJson(kc, ["-n", NS, "get", "pod", name])).status.podIP as string;

  /** Waits until status shows exactly `names` as healthy voters, phase Running, Available. */
  const waitMembers = (names: string[], timeoutMs: number, cluster = "e") =>
    waitFor<any>(
      `members ${names.join(",")}`,
      async () => {
        const s = (await getCluster(cluster)).status;
        const ok =
          s?.phase === "Running" &&
          s.conditions?.some((c: any) => c.type === "Available" && c.status === "True") &&
          s.members?.length === names.length &&
          s.members.every((m: any, i: number) => m.name === names[i] && m.healthy && m.role !== "learner");
        return ok ? s : undefined;
      },
      timeoutMs,
      1000,
    );

  beforeAll(async () => {
    await timed("node up", async () => {
      const out = execFileSync("bash", [path.join(kubeTools, "node.sh"), "up"], { encoding: "utf8", env: { ...process.env, KUBE_BIN_DIR: kubeBin }, timeout: 300_000 });
      kc = out.trim().split("\n").at(-1)!;
    });
    await timed("image", async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "etcd-ts-image-"));
      assembleImage(dir);
      execFileSync("bash", [path.join(kubeTools, "images.sh"), "app", IMAGE, dir], {
        env: { ...process.env, APP_CMD: JSON.stringify(appCmd("etcd")) },
        stdio: "ignore",
        timeout: 300_000,
      });
    });
    await kubectl(kc, ["apply", "-f", path.join(chartDir, "crds")]);
    await kubectl(kc, ["wait", "--for=condition=Established", "--timeout=60s", "crd/etcdclusters.etcd.etcd-ts.io"]);
    await kubectl(kc, ["create", "namespace", NS]);
    op = await startOperator(["--kubeconfig", kc, "--lease-namespace", NS, "--image", IMAGE, "--log-level", process.env.OPERATOR_LOG ?? "warn"]);
  }, 600_000);

  afterAll(async () => {
    await op?.stop();
    if (kc) {
      await kubectl(kc, ["delete", "namespace", NS, "--wait=false"]).catch(() => {});
      await timed("node down", async () => {
        execFileSync("bash", [path.join(kubeTools, "node.sh"), "down"], { stdio: "ignore", timeout: 300_000 });
      });
    }
    console.log(`kube-node timings (s): ${JSON.stringify(timings)}`);
  }, 600_000);

  it("creates 3, scales to 5 and back to 3, restarts a pod, replaces a lost member", async () => {
    await kubectl(kc, ["-n", NS, "apply", "-f", "-"], stringify({
      apiVersion: "etcd.etcd-ts.io/v1alpha1",
      kind: "EtcdCluster",
      metadata: { name: "e" },
      spec: { size: 3, imagePullPolicy: "Never", storage: { size: "64Mi" } },
    }));
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
    await kubectl(kc, ["-n", NS, "patch", "etcdcluster", "e", "--type=merge", "-p", '{"spec":{"size":5}}']);
    const s5 = await timed("scale 3->5", () => waitMembers(["e-0", "e-1", "e-2", "e-3", "e-4"], 300_000));
    expect(s5.observedGeneration).toBe(2);
    expect((await kubectlJson(kc, ["-n", NS, "get", "poddisruptionbudgets.v1beta1.policy", "e"])).spec.minAvailable).toBe(3);
    expect(await etcdctl(await podIP("e-4"), ["get", "k1", "--print-value-only", "--consistency=s"])).toBe("v1\n");

    // Scale in to 3, from the highest member.
    await kubectl(kc, ["-n", NS, "patch", "etcdcluster", "e", "--type=merge", "-p", '{"spec":{"size":3}}']);
    await timed("scale 5->3", () => waitMembers(["e-0", "e-1", "e-2"], 240_000));
    await waitFor(
      "e-3 and e-4 pods and PVCs gone",
      async () => {
        const l = await kubectlJson(kc, ["-n", NS, "get", "pods,pvc", "-l", "etcd.etcd-ts.io/cluster=e"]);
        const names = l.items.filter((i: any) => !i.metadata.deletionTimestamp).map((i: any) => i.metadata.name).sort();
        return JSON.stringify(names) === JSON.stringify(["data-e-0", "data-e-1", "data-e-2", "e-0", "e-1", "e-2"]);
      },
      120_000,
    );
    expect((await kubectlJson(kc, ["-n", NS, "get", "poddisruptionbudgets.v1beta1.policy", "e"])).spec.minAvailable).toBe(2);

    // A deleted pod comes back as the same member, with its data.
    await kubectl(kc, ["-n", NS, "delete", "pod", "e-2", "--wait=true"]);
    const sRestart = await timed("pod restart", () => waitMembers(["e-0", "e-1", "e-2"], 180_000));
    expect(sRestart.members.find((m: any) => m.name === "e-2").id).toBe(idsBefore["e-2"]);
    expect(await etcdctl(await podIP("e-2"), ["get", "k1", "--print-value-only", "--consistency=s"])).toBe("v1\n");

    // A member whose pod and volume are deleted is removed and re-added as a learner, same name.
    await kubectl(kc, ["-n", NS, "delete", "pvc", "data-e-1", "--wait=false"]);
    await kubectl(kc, ["-n", NS, "delete", "pod", "e-1", "--wait=false"]);
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

    const events = await kubectlJson(kc, ["-n", NS, "get", "events", "--field-selector", "involvedObject.kind=EtcdCluster"]);
    const reasons = new Set(events.items.map((e: any) => e.reason));
    for (const r of ["Bootstrap", "AddLearner", "Promote", "RemoveMember", "CreatePod"]) expect(reasons.has(r), r).toBe(true);
    const removals = events.items.filter((e: any) => e.reason === "RemoveMember").map((e: any) => e.message);
    expect(removals.some((m: string) => /remove e-1 \(repair\)/.test(m))).toBe(true);
    expect(removals.some((m: string) => /remove e-4 \(scale-in\)/.test(m))).toBe(true);
  }, 1_500_000);
});
