/**
 * Auth on a cluster of three etcd-ts processes: users, roles and permissions administered through
 * one member are the same on every member (they travel through the log into each member's
 * backend), a simple token issued by one member is accepted by the others (each registers it when
 * it applies the Authenticate entry), the gateway takes the token from the Authorization header,
 * and everything survives a restart of every member. The same runs on a mixed cluster whose third
 * member is a real etcd 3.4 (the log's auth requests mean the same to both binaries), with simple
 * tokens and with ES256 JWTs (a token signed by etcd-ts verifies on etcd).
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, type ServerBinary } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

const ROOT = ["--user", "root:rootpw"];
const U = ["--user", "u:upw"];

/** What each member must answer alike (stdout and stderr of each command, exit status). */
async function authView(cluster: Cluster, i: number): Promise<string> {
  const url = cluster.members[i]!.clientUrl;
  const out: string[] = [];
  for (const args of [
    [...ROOT, "user", "list"],
    [...ROOT, "role", "list"],
    [...ROOT, "user", "get", "u"],
    [...ROOT, "role", "get", "r"],
    [...U, "get", "app/", "--prefix", "--consistency=s"],
    [...U, "get", "other", "--consistency=s"],
    ["get", "app/a", "--consistency=s"],
  ]) {
    const r = await runEtcdctl(url, args);
    out.push(`$ ${args.join(" ")}`, r.stdout.trim(), r.stderr.replace(/\{"level".*\n/g, "").trim(), `[exit ${r.code}]`);
  }
  return out.join("\n");
}

async function eventually(check: () => Promise<void>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

describe("auth across a cluster", () => {
  let cluster: Cluster | undefined;

  afterAll(async () => {
    await cluster?.destroy();
    await killAllChildren();
  });

  const reference = referenceEtcdPath();
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-ts-auth-cluster-"));
  const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  fs.writeFileSync(path.join(keyDir, "ec.key"), privateKey.export({ type: "sec1", format: "pem" }));
  const JWT = ["--auth-token", `jwt,priv-key=${path.join(keyDir, "ec.key")},sign-method=ES256`];
  const cases: Array<[string, ServerBinary[], string[]]> = [["etcd-ts, simple tokens", [etcdTsBinary(), etcdTsBinary(), etcdTsBinary()], []]];
  if (reference !== undefined) {
    const etcd = serverBinaryFromSpec(reference);
    cases.push(["mixed (a real etcd 3.4 member), simple tokens", [etcdTsBinary(), etcdTsBinary(), etcd], []]);
    cases.push(["mixed (a real etcd 3.4 member), ES256 JWT", [etcdTsBinary(), etcdTsBinary(), etcd], JWT]);
  }
  afterAll(() => fs.rmSync(keyDir, { recursive: true, force: true }));

  it.each(cases)("%s: the auth state is the same on every member, tokens work on any member, and all of it survives restarts", async (_name, binaries, args) => {
    await cluster?.destroy();
    cluster = await Cluster.start({ binaries, namePrefix: "au", clusterToken: "auth-cluster", extraArgs: ["--bcrypt-cost", "4", ...args] });
    const c = cluster;
    const via0 = async (args: string[]): Promise<void> => {
      const r = await runEtcdctl(c.members[0]!.clientUrl, args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
    };
    await via0(["put", "app/a", "1"]);
    await via0(["put", "other", "x"]);
    await via0(["user", "add", "root:rootpw"]);
    await via0(["user", "add", "u:upw"]);
    await via0(["role", "add", "r"]);
    await via0(["role", "grant-permission", "r", "readwrite", "app/", "--prefix"]);
    await via0(["user", "grant-role", "u", "r"]);
    await via0(["auth", "enable"]);
    await via0([...U, "put", "app/b", "2"]);

    const expected = await authView(c, 0);
    expect(expected).toContain("Roles: r");
    expect(expected).toContain("app/b\n2");
    expect(expected).toContain("etcdserver: permission denied");
    expect(expected).toContain("etcdserver: user name is empty");
    for (const i of [1, 2]) await eventually(async () => expect(await authView(c, i)).toBe(expected));

    // A simple token from member 0, used on members 1 and 2 through the gateway's Authorization header.
    const auth = await fetch(`${c.members[0]!.clientUrl}/v3/auth/authenticate`, { method: "POST", body: JSON.stringify({ name: "u", password: "upw" }) });
    expect(auth.status).toBe(200);
    const token = ((await auth.json()) as { token: string }).token;
    expect(token).toMatch(args.length === 0 ? /^[a-zA-Z]{16}\.\d+$/ : /^eyJ/);
    for (const i of [1, 2]) {
      const key = Buffer.from("app/a").toString("base64");
      await eventually(async () => {
        const r = await fetch(`${c.members[i]!.clientUrl}/v3/kv/range`, { method: "POST", headers: { Authorization: token }, body: JSON.stringify({ key }) });
        const body = (await r.json()) as { kvs?: Array<{ value: string }> };
        expect(r.status).toBe(200);
        expect(Buffer.from(body.kvs![0]!.value, "base64").toString()).toBe("1");
      });
      const refused = await fetch(`${c.members[i]!.clientUrl}/v3/kv/range`, {
        method: "POST", headers: { Authorization: token }, body: JSON.stringify({ key: Buffer.from("other").toString("base64") }),
      });
      expect(refused.status).toBe(403);
      const bad = await fetch(`${c.members[i]!.clientUrl}/v3/kv/range`, { method: "POST", headers: { Authorization: "nosuch.1" }, body: JSON.stringify({ key }) });
      expect(bad.status).toBe(401);
    }

    // Every member restarts from its own disk: same state, auth still on.
    for (const i of [0, 1, 2]) await c.kill(i, "SIGTERM");
    await Promise.all([0, 1, 2].map((i) => c.restart(i)));
    await c.waitLeader();
    for (const i of [0, 1, 2]) await eventually(async () => expect(await authView(c, i)).toBe(expected));

    // Changes after the restart reach every member too.
    await via0([...ROOT, "role", "revoke-permission", "r", "app/", "--prefix"]);
    for (const i of [0, 1, 2]) {
      await eventually(async () => {
        const r = await runEtcdctl(c.members[i]!.clientUrl, [...U, "get", "app/a", "--consistency=s"]);
        expect(r.stderr).toContain("etcdserver: permission denied");
      });
    }
  }, 180_000);
});
