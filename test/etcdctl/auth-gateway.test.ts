/**
 * Auth over etcd's JSON gateway, against real etcd 3.4 and etcd-ts side by side (both with JWT
 * tokens, RS256 keys made here): authenticate, a token in the Authorization header (or a
 * Grpc-Metadata-Token header, which grpc-gateway passes on as the `token` metadata), requests
 * without one or with a bad one, and a token issued before an auth change (its revision is old).
 * Status and body of every answer must be equal; the tokens themselves are never compared.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { binaryUnderTest, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { killAllChildren } from "../harness/processes.js";
import { DIFF_IDENTITY } from "./diff-suite.js";

const reference = referenceEtcdPath();
const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-ts-gw-jwt-"));
const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
fs.writeFileSync(path.join(keyDir, "k"), privateKey.export({ type: "pkcs8", format: "pem" }));
fs.writeFileSync(path.join(keyDir, "k.pub"), publicKey.export({ type: "spki", format: "pem" }));
const ARGS = ["--auth-token", `jwt,pub-key=${path.join(keyDir, "k.pub")},priv-key=${path.join(keyDir, "k")},sign-method=RS256`, "--bcrypt-cost", "4"];
const b64 = (s: string): string => Buffer.from(s).toString("base64");

async function script(m: Member): Promise<string> {
  const out: string[] = [];
  const call = async (route: string, body: unknown, token?: string, header = "Authorization"): Promise<Record<string, unknown>> => {
    const res = await fetch(m.clientUrl + route, { method: "POST", body: JSON.stringify(body), headers: token === undefined ? {} : { [header]: token } });
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not JSON: recorded as text
    }
    const shown = typeof json.token === "string" ? { ...json, token: "<token>" } : json;
    out.push(`POST ${route} ${JSON.stringify(body)}${token === undefined ? "" : ` (with token in ${header})`}`, `[${res.status}] ${Object.keys(json).length > 0 ? JSON.stringify(shown) : text}`);
    return json;
  };
  for (const args of [["put", "gw/k", "v"], ["put", "gw/other", "o"], ["user", "add", "root:rootpw"], ["user", "add", "u:upw"], ["role", "add", "r"],
    ["role", "grant-permission", "r", "readwrite", "gw/k"], ["user", "grant-role", "u", "r"], ["auth", "enable"]]) {
    const r = await runEtcdctl(m.clientUrl, args);
    if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
  }
  await call("/v3/auth/authenticate", { name: "u", password: "nope" });
  await call("/v3/auth/authenticate", { name: "nobody", password: "x" });
  const u = (await call("/v3/auth/authenticate", { name: "u", password: "upw" })).token as string;
  const root = (await call("/v3/auth/authenticate", { name: "root", password: "rootpw" })).token as string;
  await call("/v3/kv/range", { key: b64("gw/k") });
  await call("/v3/kv/range", { key: b64("gw/k") }, u);
  await call("/v3/kv/range", { key: b64("gw/other") }, u);
  await call("/v3/kv/range", { key: b64("gw/k") }, "not-a-token");
  await call("/v3/kv/put", { key: b64("gw/k"), value: b64("v2") }, u);
  await call("/v3/kv/put", { key: b64("gw/other"), value: b64("x") }, u);
  await call("/v3/auth/user/list", {}, u);
  await call("/v3/auth/user/list", {}, root);
  await call("/v3/auth/user/get", { name: "u" }, u);
  await call("/v3/auth/role/get", { role: "r" }, u);
  await call("/v3/auth/role/add", { name: "r2" }, root);
  // Both tokens were issued before that change: their auth revision is old now.
  await call("/v3/kv/range", { key: b64("gw/k") }, u);
  await call("/v3/kv/put", { key: b64("gw/k"), value: b64("v3") }, u);
  await call("/v3/auth/user/list", {}, root);
  const fresh = (await call("/v3/auth/authenticate", { name: "u", password: "upw" })).token as string;
  await call("/v3/kv/range", { key: b64("gw/k") }, fresh);
  // grpc-gateway passes Grpc-Metadata-<Key> headers on as metadata: the token as `token`.
  await call("/v3/kv/range", { key: b64("gw/k") }, fresh, "Grpc-Metadata-Token");
  await call("/v3/kv/range", { key: b64("gw/other") }, fresh, "Grpc-Metadata-Token");
  await call("/v3/kv/range", { key: b64("gw/k") }, "not-a-token", "Grpc-Metadata-Token");
  const rootFresh = (await call("/v3/auth/authenticate", { name: "root", password: "rootpw" })).token as string;
  await call("/v3/auth/disable", {}, rootFresh);
  await call("/v3/kv/range", { key: b64("gw/k") });
  return out.join("\n");
}

describe.skipIf(reference === undefined)("auth over the JSON gateway", () => {
  const members: Member[] = [];
  afterAll(async () => {
    for (const m of members) await m.destroy();
    await killAllChildren();
    fs.rmSync(keyDir, { recursive: true, force: true });
  });

  it("answers as etcd 3.4 does, JWT revision checks included", async () => {
    const [ref, cand] = await Promise.all([
      startMember({ binary: serverBinaryFromSpec(reference), ...DIFF_IDENTITY, extraArgs: ARGS }),
      startMember({ binary: binaryUnderTest(), ...DIFF_IDENTITY, extraArgs: ARGS }),
    ]);
    members.push(ref, cand);
    const [refT, candT] = await Promise.all([script(ref), script(cand)]);
    expect(refT).toContain("revision of auth store is old");
    expect(candT).toBe(refT);
  }, 120_000);
});
