/**
 * Token providers as `--auth-token` configures them: simple tokens (index-bound, sliding TTL,
 * dropped with their user or with auth disable) and JWT in every family etcd 3.4 signs with.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../../src/pkg/clock.js";
import { nullLogger } from "../../../src/pkg/logger.js";
import { parseGoDurationMs, tokenProvider, TokenOptionsError } from "../../../src/server/auth/token-provider.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-ts-tokens-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, data: string | Buffer): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  return p;
}

describe("simple tokens", () => {
  it("are valid once their index is applied, for the TTL after their last use", async () => {
    const clock = new ManualClock();
    let applied = 10;
    const tokens = tokenProvider("simple", 5, { clock, logger: nullLogger, waitApplied: async (i) => i <= applied });
    tokens.enable();
    const prefix = tokens.genTokenPrefix();
    expect(prefix).toMatch(/^[a-zA-Z]{16}$/);
    const t = await tokens.assign("u", 3, { index: 12, simpleTokenPrefix: prefix });
    expect(t).toBe(`${prefix}.12`);
    expect(await tokens.info(t, 7)).toBeUndefined(); // index 12 not applied yet
    applied = 12;
    expect(await tokens.info(t, 7)).toEqual({ username: "u", revision: 7 });
    clock.advance(4000);
    expect(await tokens.info(t, 7)).toBeDefined(); // used: another 5 s from now
    clock.advance(4000);
    expect(await tokens.info(t, 7)).toBeDefined();
    clock.advance(6000);
    expect(await tokens.info(t, 7)).toBeUndefined();
    const t2 = await tokens.assign("v", 3, { index: 1, simpleTokenPrefix: prefix });
    tokens.invalidateUser("v");
    expect(await tokens.info(t2, 7)).toBeUndefined();
    const t3 = await tokens.assign("w", 3, { index: 2, simpleTokenPrefix: prefix });
    tokens.disable();
    expect(await tokens.info(t3, 7)).toBeUndefined();
    expect(await tokens.info("garbage", 7)).toBeUndefined();
    tokens.stop();
  });
});

describe("JWT", () => {
  const clock = new ManualClock({ startMs: Date.UTC(2026, 0, 1) });
  const deps = { clock, logger: nullLogger, waitApplied: async () => true };
  const rsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rsaPriv = write("rsa.key", rsa.privateKey.export({ type: "pkcs1", format: "pem" }));
  const rsaPub = write("rsa.pub", rsa.publicKey.export({ type: "pkcs1", format: "pem" }));
  const ecPriv = write("ec.key", ec.privateKey.export({ type: "sec1", format: "pem" }));
  const ecPub = write("ec.pub", ec.publicKey.export({ type: "spki", format: "pem" }));
  const secret = write("hmac", "a shared secret of some length");

  it.each([
    ["RS256", rsaPriv, rsaPub],
    ["PS384", rsaPriv, rsaPub],
    ["ES256", ecPriv, ecPub],
    ["HS512", secret, ""],
  ])("%s: signs, verifies, and carries user and revision until it expires", async (alg, priv, pub) => {
    const tokens = tokenProvider(`jwt,pub-key=${pub},priv-key=${priv},sign-method=${alg},ttl=1m`, 300, deps);
    const t = await tokens.assign("alice", 42, { index: 1, simpleTokenPrefix: "" });
    expect(JSON.parse(Buffer.from(t.split(".")[0]!, "base64url").toString())).toMatchObject({ alg });
    expect(await tokens.info(t, 99)).toEqual({ username: "alice", revision: 42 });
    expect(await tokens.info(t.slice(0, -4) + "AAAA", 99)).toBeUndefined();
    clock.advance(61_000);
    expect(await tokens.info(t, 99)).toBeUndefined();
  });

  it("a public key alone verifies but cannot sign; options are checked as etcd checks them", async () => {
    const signer = tokenProvider(`jwt,priv-key=${rsaPriv},sign-method=RS256`, 300, deps);
    const verifier = tokenProvider(`jwt,pub-key=${rsaPub},sign-method=RS256`, 300, deps);
    const t = await signer.assign("bob", 1, { index: 1, simpleTokenPrefix: "" });
    expect(await verifier.info(t, 1)).toEqual({ username: "bob", revision: 1 });
    await expect(verifier.assign("bob", 1, { index: 1, simpleTokenPrefix: "" })).rejects.toThrow("verify-only");
    // A token signed with another method is refused.
    const other = tokenProvider(`jwt,priv-key=${rsaPriv},sign-method=RS512`, 300, deps);
    expect(await verifier.info(await other.assign("bob", 1, { index: 1, simpleTokenPrefix: "" }), 1)).toBeUndefined();
    expect(() => tokenProvider("jwt,sign-method=XX256", 300, deps)).toThrow("auth: invalid auth signature method");
    expect(() => tokenProvider("jwt,sign-method=RS256", 300, deps)).toThrow("auth: missing key data");
    expect(() => tokenProvider("jwt,sign-method", 300, deps)).toThrow(TokenOptionsError);
    expect(() => tokenProvider("nope", 300, deps)).toThrow("auth: invalid auth options");
    expect(parseGoDurationMs("1h30m")).toBe(5_400_000);
    expect(parseGoDurationMs("1.5s")).toBe(1500);
    expect(() => parseGoDurationMs("5 minutes")).toThrow();
  });
});
