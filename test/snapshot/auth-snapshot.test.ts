/**
 * The auth state in a snapshot: etcd-ts with users, roles, permissions and auth enabled saves a
 * snapshot (as root), `etcdctl snapshot restore` takes it, and a real etcd 3.4 started on the
 * restored data dir serves the same auth state (etcd's buckets and records, bcrypt hashes its Go
 * bcrypt verifies, auth still enabled). Skipped without /usr/bin/etcd.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { etcdctlPath, runEtcdctl } from "../harness/etcdctl.js";
import { BboltReader } from "../../server/src/mvcc/backend/bbolt-reader.js";
import { Member, binaryUnderTest, referenceEtcdPath, startMember } from "../harness/member.js";
import { killAllChildren } from "../harness/processes.js";

const reference = referenceEtcdPath();
const haveTools = reference !== undefined && fs.existsSync(etcdctlPath());

describe.skipIf(!haveTools)("auth state through a snapshot into real etcd", () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-ts-auth-snap-"));
  const members: Member[] = [];

  afterAll(async () => {
    for (const m of members) await m.destroy();
    await killAllChildren();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("real etcd restored from an etcd-ts snapshot has the users, roles, permissions and auth on", async () => {
    const source = await startMember({ binary: binaryUnderTest(), name: "src", extraArgs: ["--bcrypt-cost", "4"] });
    members.push(source);
    const ok = async (url: string, args: string[]): Promise<string> => {
      const r = await runEtcdctl(url, args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    for (const args of [
      ["put", "k", "v"], ["put", "other", "o"], ["user", "add", "root:rootpw"], ["user", "add", "u:upw"], ["user", "add", "cert-user", "--no-password"],
      ["role", "add", "r"], ["role", "grant-permission", "r", "read", "k"], ["role", "grant-permission", "r", "readwrite", "p/", "--prefix"],
      ["user", "grant-role", "u", "r"], ["auth", "enable"],
    ]) await ok(source.clientUrl, args);
    const file = path.join(scratch, "auth.db");
    // Only root may take a snapshot (etcd's refusal: the auth store's text, code Unknown).
    const refused = await runEtcdctl(source.clientUrl, ["--user", "u:upw", "snapshot", "save", path.join(scratch, "u.db")]);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain("Error: rpc error: code = Unknown desc = auth: permission denied");
    await ok(source.clientUrl, ["--user", "root:rootpw", "snapshot", "save", file]);
    // etcd's buckets and keys (etcdctl's auth enable added the root role and granted it: revision 10).
    const r = BboltReader.open(file);
    try {
      const dump = new Map(r.dump());
      expect(dump.get("auth")?.map(([k, v]) => `${k.toString()}=${v.toString("hex")}`)).toEqual(["authEnabled=01", "authRevision=000000000000000a"]);
      expect(dump.get("authUsers")?.map(([k]) => k.toString())).toEqual(["cert-user", "root", "u"]);
      expect(dump.get("authRoles")?.map(([k]) => k.toString())).toEqual(["r", "root"]);
    } finally {
      r.close();
    }

    const restored = new Member({ binary: { kind: "etcd", command: reference!, prefixArgs: [] }, name: "restored", advertisePeerUrl: "http://127.0.0.1:2390" });
    members.push(restored);
    const restore = await runEtcdctl(source.clientUrl, [
      "snapshot", "restore", file, "--data-dir", restored.dataDir, "--name", "restored",
      "--initial-cluster", "restored=http://127.0.0.1:2390", "--initial-advertise-peer-urls", "http://127.0.0.1:2390",
    ]);
    expect(restore.code, restore.stderr).toBe(0);
    await restored.start();
    const url = restored.clientUrl;
    expect(await ok(url, ["--user", "root:rootpw", "user", "list"])).toBe("cert-user\nroot\nu\n");
    expect(await ok(url, ["--user", "root:rootpw", "role", "get", "r"])).toBe("Role r\nKV Read:\n\tk\n\t[p/, p0) (prefix p/)\nKV Write:\n\t[p/, p0) (prefix p/)\n");
    expect(await ok(url, ["--user", "u:upw", "get", "k", "--print-value-only"])).toBe("v\n");
    expect((await runEtcdctl(url, ["--user", "u:upw", "get", "other"])).stderr).toContain("etcdserver: permission denied");
    expect((await runEtcdctl(url, ["--user", "u:wrong", "get", "k"])).stderr).toContain("authentication failed, invalid user ID or password");
    expect((await runEtcdctl(url, ["get", "k"])).stderr).toContain("etcdserver: user name is empty");
  }, 120_000);
});
