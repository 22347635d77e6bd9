/**
 * Client certificates as users (--client-cert-auth with auth enabled): the verified certificate's
 * common name is the user when no token is sent. The same etcdctl script runs against real etcd
 * 3.4 and etcd-ts, both serving https with a CA made here by openssl; the transcripts (stdout,
 * stderr, exit status, with endpoints and log timestamps normalised) must be identical.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { referenceEtcdPath, repoRoot } from "../harness/member.js";
import { freePorts, killAllChildren, killChild, sleep, trackChild } from "../harness/processes.js";
import { writeTestCertificates } from "../harness/test-certs.js";
import { runEtcdctl } from "../harness/etcdctl.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-auth-cert-"));
const f = (name: string): string => path.join(dir, name);

const as = (cn: string): string[] => ["--cacert", f("ca.crt"), "--cert", f(`${cn}.crt`), "--key", f(`${cn}.key`)];

/** The script: users named like the certificates, auth enabled by the root certificate. */
const SCRIPT: Array<{ args: string[]; stdin?: string }> = [
  { args: [...as("root"), "user", "add", "root:rootpw"] },
  { args: [...as("root"), "user", "add", "alice", "--no-password"] },
  { args: [...as("root"), "role", "add", "r"] },
  { args: [...as("root"), "role", "grant-permission", "r", "readwrite", "c/", "--prefix"] },
  { args: [...as("root"), "user", "grant-role", "alice", "r"] },
  { args: [...as("root"), "auth", "enable"] },
  { args: [...as("alice"), "put", "c/x", "1"] },
  { args: [...as("alice"), "get", "c/", "--prefix"] },
  { args: [...as("alice"), "put", "d", "1"] },
  { args: [...as("alice"), "get", "d"] },
  { args: [...as("alice"), "user", "list"] },
  { args: [...as("alice"), "user", "get", "alice"] },
  { args: [...as("alice"), "txn"], stdin: '\nput c/t 1\nget c/x\n\n\n' },
  { args: [...as("mallory"), "get", "c/x"] },
  { args: [...as("mallory"), "put", "c/m", "1"] },
  { args: [...as("root"), "user", "list"] },
  { args: [...as("root"), "put", "d", "root"] },
  { args: [...as("alice"), "--user", "root:rootpw", "get", "d"] },
  { args: [...as("alice"), "--user", "root:wrong", "get", "d"] },
  { args: [...as("root"), "user", "revoke-role", "alice", "r"] },
  { args: [...as("alice"), "get", "c/x"] },
  { args: [...as("root"), "auth", "disable"] },
  { args: [...as("alice"), "get", "d"] },
];

interface Side {
  endpoint: string;
  child: ReturnType<typeof spawn>;
}

async function start(bin: string[], name: string): Promise<Side> {
  const [client, peer] = await freePorts(2);
  const endpoint = `https://127.0.0.1:${client}`;
  const child = spawn(bin[0]!, [
    ...bin.slice(1),
    "--name", "cert", "--data-dir", f(`data-${name}`),
    "--listen-client-urls", endpoint, "--advertise-client-urls", "https://127.0.0.1:2379",
    "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
    "--initial-cluster", "cert=http://127.0.0.1:2380", "--initial-cluster-token", "cert-token",
    "--cert-file", f("server.crt"), "--key-file", f("server.key"),
    "--client-cert-auth", "--trusted-ca-file", f("ca.crt"), "--bcrypt-cost", "4",
  ], { stdio: ["ignore", "ignore", "ignore"] });
  trackChild(child);
  for (let i = 0; i < 100; i++) {
    const r = await runEtcdctl(endpoint, [...as("root"), "endpoint", "health"]);
    if (r.code === 0) return { endpoint, child };
    await sleep(200);
  }
  throw new Error(`${name} did not become healthy`);
}

async function transcript(side: Side): Promise<string> {
  const out: string[] = [];
  for (const step of SCRIPT) {
    const r = await runEtcdctl(side.endpoint, step.args, { stdin: step.stdin });
    out.push(`$ etcdctl ${step.args.filter((a) => !a.startsWith(dir)).join(" ")}`, r.stdout, r.stderr, `[exit ${r.code}]`);
  }
  return out
    .join("\n")
    .split(side.endpoint).join("<endpoint>")
    .split(side.endpoint.replace("https://", "")).join("<endpoint-host>")
    .replace(/"ts":"[^"]*"/g, '"ts":"<ts>"')
    .replace(/client-[0-9a-f-]{36}/g, "client-<uuid>");
}

const reference = referenceEtcdPath();

describe.skipIf(reference === undefined)("client certificate common names as users", () => {
  const sides: Side[] = [];

  beforeAll(() => {
    writeTestCertificates(dir, ["root", "alice", "mallory"]);
  });

  afterAll(async () => {
    for (const s of sides) await killChild(s.child);
    await killAllChildren();
    rmSync(dir, { recursive: true, force: true });
  });

  it("etcdctl with certificates as root, an allowed and an unknown user gives etcd's transcript", async () => {
    const etcdTs = path.join(repoRoot, "server/bin/etcd-ts.js");
    expect(existsSync(etcdTs)).toBe(true);
    const [ref, cand] = await Promise.all([start([reference!], "etcd"), start([process.execPath, etcdTs], "etcd-ts")]);
    sides.push(ref, cand);
    const [refT, candT] = await Promise.all([transcript(ref), transcript(cand)]);
    expect(refT).toContain("permission denied");
    expect(refT).toMatch(/c\/x\n1\n/);
    expect(candT).toBe(refT);
  }, 120_000);
});
