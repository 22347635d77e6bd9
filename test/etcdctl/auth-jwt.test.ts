/**
 * The etcdctl auth scripts of auth-scripts.ts with JWT tokens (`--auth-token jwt,...`, RS256 with
 * an RSA key pair generated here), against real etcd and the server under test (see
 * diff-suite.ts). The tokens themselves are never printed, so the transcripts must be identical.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe } from "vitest";
import { diffSuite } from "./diff-suite.js";
import { authCases } from "./auth-scripts.js";

const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "etcd-ts-jwt-"));
const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const privPath = path.join(keyDir, "jwt.key");
const pubPath = path.join(keyDir, "jwt.pub");
fs.writeFileSync(privPath, privateKey.export({ type: "pkcs1", format: "pem" }));
fs.writeFileSync(pubPath, publicKey.export({ type: "spki", format: "pem" }));

describe("etcdctl auth (JWT tokens)", () => {
  afterAll(() => fs.rmSync(keyDir, { recursive: true, force: true }));
  authCases(
    diffSuite("auth-jwt", {
      extraArgs: ["--auth-token", `jwt,pub-key=${pubPath},priv-key=${privPath},sign-method=RS256,ttl=10m`, "--bcrypt-cost", "4"],
    }),
  );
});
