/**
 * The Dockerfile and the tests' image stay in step: the same /app files (both from
 * scripts/assemble-image.mjs), the same entrypoint and modes, the same user as the chart's
 * securityContext, and the server command the operator puts in member pods exists in the image.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { readFileSync } from "node:fs";
import { chartDir } from "./chart-render.js";
import { assembleImage, dockerfileFacts } from "./image.js";

const out = mkdtempSync(path.join(os.tmpdir(), "image-layout-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("the image", () => {
  const f = dockerfileFacts();

  it("Dockerfile: multi-stage, Node LTS, /app from assemble-image.mjs, non-root, entrypoint and healthcheck", () => {
    expect(Number(f.nodeVersion) % 2, "an even (LTS) Node major").toBe(0);
    expect(Number(f.nodeVersion)).toBeGreaterThanOrEqual(22);
    expect(f.usesAssembleScript).toBe(true);
    expect(f.entrypoint).toEqual(["node", "/app/operator/bin/entrypoint.js"]);
    expect(f.cmd).toEqual(["etcd"]);
    expect(f.workdir).toBe("/app");
    expect(f.user).toBe("10001:10001");
    const values = parse(readFileSync(path.join(chartDir, "values.yaml"), "utf8"));
    expect(`${values.podSecurityContext.runAsUser}:${values.podSecurityContext.runAsGroup}`).toBe(f.user);
  });

  it("the assembled /app holds the entrypoint, both programs and their production dependencies only", () => {
    assembleImage(out);
    for (const p of ["operator/bin/entrypoint.js", "server/bin/etcd-ts.js", "server/dist/etcdmain/main.js", "operator/dist/main.js", "proto/dist/etcdserverpb/rpc.js"]) {
      expect(existsSync(path.join(out, p)), p).toBe(true);
    }
    for (const dep of ["@grpc/grpc-js", "@kubernetes/client-node", "classic-level", "@etcd-ts/proto"]) {
      expect(existsSync(path.join(out, "node_modules", dep)), dep).toBe(true);
    }
    for (const dev of ["typescript", "vitest", "tsx", "ts-proto"]) expect(existsSync(path.join(out, "node_modules", dev)), dev).toBe(false);
    // The entrypoint's modes run from the assembled tree.
    const entry = path.join(out, "operator/bin/entrypoint.js");
    expect(execFileSync(process.execPath, [entry, "etcd", "--version"], { encoding: "utf8", cwd: os.tmpdir() })).toMatch(/etcd-ts Version/);
    expect(execFileSync(process.execPath, [entry, "--version"], { encoding: "utf8", cwd: os.tmpdir() })).toMatch(/etcd-ts Version/);
    expect(execFileSync(process.execPath, [entry, "operator", "--help"], { encoding: "utf8", cwd: os.tmpdir() })).toMatch(/etcd-ts-operator/);
  });

  it("the backup and restore modes load from the assembled tree (bad command lines: exit 2 and 128)", () => {
    const entry = path.join(out, "operator/bin/entrypoint.js");
    expect(existsSync(path.join(out, "node_modules", "croner"))).toBe(true);
    expect(spawnSync(process.execPath, [entry, "backup", "--bogus"], { cwd: os.tmpdir() }).status).toBe(2);
    expect(spawnSync(process.execPath, [entry, "restore"], { cwd: os.tmpdir() }).status).toBe(128);
  });

  it("the operator's member command exists in the image", async () => {
    const { USAGE } = await import("../../operator/src/main.js");
    const cmd = /default \[("node","[^"]+")\]/.exec(USAGE)![1]!.split(",").map((s) => JSON.parse(s));
    expect(cmd[0]).toBe("node");
    expect(cmd[1].startsWith("/app/")).toBe(true);
    expect(existsSync(path.join(out, cmd[1].slice("/app/".length)))).toBe(true);
  });
});
