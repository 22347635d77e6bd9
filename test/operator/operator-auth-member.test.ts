/**
 * spec.auth on a real etcd-ts member (no Kubernetes): the reconciler generates the root password
 * into a Secret, adds root, grants it the role root and turns auth on; afterwards its own calls
 * (Status, MemberList, root-only Defragment) authenticate with a token, etcdctl needs the
 * credentials, a backup's snapshot stream authenticates with them; turning spec.auth off turns
 * auth off. `ETCD_BIN=/usr/bin/etcd` runs it against etcd 3.4.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SecretRootCredentials } from "../../operator/src/auth/root-credentials.js";
import { saveSnapshot } from "../../operator/src/backup/backup-command.js";
import { Reconciler, type PassResult } from "../../operator/src/cluster/reconciler.js";
import { GrpcEtcdAdmin } from "../../operator/src/etcd/grpc-etcd-admin.js";
import { GrpcSnapshotSource } from "../../operator/src/etcd/grpc-snapshot-source.js";
import { binaryUnderTest, startMember, type Member } from "../harness/member.js";
import { clusterObject, MemberWorld, MemorySecrets } from "./member-world.js";

const run = promisify(execFile);

describe("spec.auth on a real member", () => {
  const secrets = new MemorySecrets();
  const world = new MemberWorld();
  const admin = new GrpcEtcdAdmin({ timeoutMs: 5000 });
  const cluster = clusterObject("e", { size: 1, auth: { enabled: true } });
  let member: Member;
  let address = "";
  let dir = "";
  const rec = new Reconciler(
    { clusterDomain: "cluster.local", defaultImage: "x", serverCommand: ["etcd-ts"], requeueSteadyMs: 1, requeueWaitMs: 1, requeueActionMs: 1 },
    { store: world, etcd: admin, log: { info() {}, warn() {} }, now: () => new Date(), rootCredentials: new SecretRootCredentials({}, { secrets }), addressOf: world.addressOf },
  );
  const ctl = (args: string[]) => run("etcdctl", ["--endpoints", member.clientUrl, "--dial-timeout=2s", "--command-timeout=5s", ...args], { env: { ...process.env, ETCDCTL_API: "3" } });
  /** Passes until a steady one (at most `max`); the steps taken. */
  const settle = async (max = 10): Promise<string[]> => {
    const steps: string[] = [];
    for (let i = 0; i < max; i++) {
      const r: PassResult = await rec.reconcile(cluster);
      steps.push(r.step.kind);
      if (r.step.kind === "steady") return steps;
    }
    throw new Error(`not steady after ${max} passes: ${steps.join(", ")}; status ${JSON.stringify(world.status?.conditions)}`);
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "operator-auth-"));
    member = await startMember({ binary: binaryUnderTest(), name: "e-0" });
    address = new URL(member.clientUrl).host;
    world.pods.set("e-0", { address, hash: rec.specHash(cluster), ready: true });
  }, 60_000);

  afterAll(async () => {
    admin.close();
    await member?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("generates the root password, turns auth on in etcd's order, and keeps working authenticated", async () => {
    await ctl(["put", "k", "v"]);
    const steps = await settle();
    expect(steps).toContain("enable-auth");
    const password = secrets.secrets.get("ns/e-root")!.data.password!;
    expect(password.length).toBeGreaterThanOrEqual(24);
    expect(world.status?.authEnabled).toBe(true);
    expect(world.events.some((e) => e.startsWith("Normal AuthEnabled"))).toBe(true);
    // No password in events, status or logs of the pass.
    expect(JSON.stringify([world.events, world.status])).not.toContain(password);

    await expect(ctl(["get", "k"])).rejects.toThrow(/user name is empty|permission denied|invalid auth token/);
    expect((await ctl(["--user", `root:${password}`, "get", "k", "--print-value-only"])).stdout).toBe("v\n");
    const roles = (await ctl(["--user", `root:${password}`, "user", "get", "root"])).stdout;
    expect(roles).toMatch(/Roles: root/);

    // Later passes observe through tokens: healthy and steady, nothing more to do.
    expect(await settle(2)).toEqual(["steady"]);
    expect(world.status?.members?.[0]).toMatchObject({ name: "e-0", healthy: true, role: "leader" });
    // Root-only maintenance with the operator's credentials; refused without.
    await admin.defragment({ address, auth: { user: "root", password } });
    await expect(new GrpcEtcdAdmin({ timeoutMs: 5000 }).defragment({ address })).rejects.toThrow();
  });

  it("a backup's snapshot stream authenticates with the root credentials", async () => {
    const password = secrets.secrets.get("ns/e-root")!.data.password!;
    const file = path.join(dir, "s.db");
    const r = await saveSnapshot(new GrpcSnapshotSource({ idleTimeoutMs: 10_000, auth: { user: "root", password } }), address, file);
    expect(r.size).toBeGreaterThan(0);
    await expect(saveSnapshot(new GrpcSnapshotSource({ idleTimeoutMs: 10_000 }), address, path.join(dir, "t.db"))).rejects.toThrow();
  });

  it("turning spec.auth off turns auth off", async () => {
    cluster.spec.auth = { enabled: false };
    cluster.metadata.generation = 2;
    const steps = await settle();
    expect(steps).toContain("disable-auth");
    expect(world.status?.authEnabled).toBe(false);
    expect(world.events.some((e) => e.startsWith("Normal AuthDisabled"))).toBe(true);
    expect((await ctl(["get", "k", "--print-value-only"])).stdout).toBe("v\n");
    // Auth off and not wanted: no more probing, steady.
    expect(await settle(2)).toEqual(["steady"]);
  });
});
