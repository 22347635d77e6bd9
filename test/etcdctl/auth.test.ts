/**
 * etcdctl user, role and auth commands, and every kind of command as allowed and refused users,
 * with simple tokens (etcd's default), against real etcd and the server under test (see
 * diff-suite.ts; the scripts are in auth-scripts.ts).
 */
import { describe } from "vitest";
import { diffSuite } from "./diff-suite.js";
import { authCases } from "./auth-scripts.js";

describe("etcdctl auth (simple tokens)", () => {
  authCases(diffSuite("auth", { extraArgs: ["--auth-token", "simple", "--bcrypt-cost", "4"] }));
});
