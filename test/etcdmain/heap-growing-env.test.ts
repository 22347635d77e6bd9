/**
 * The binary's ETCD_TS_HEAP_GROWING_PERCENT (V8's heap growing factor, as GOGC is etcd's): a
 * valid value starts the process, anything else is refused before the server starts.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "server", "bin", "etcd-ts.js");

function run(value: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, "--version"], { env: { ...process.env, ETCD_TS_HEAP_GROWING_PERCENT: value }, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("ETCD_TS_HEAP_GROWING_PERCENT", () => {
  it("takes an integer percentage", () => {
    const r = run("100");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("etcd-ts Version");
  });

  it("refuses anything else", () => {
    for (const bad of ["abc", "0", "1.5", "-3", "5000"]) {
      const r = run(bad);
      expect(r.status, bad).toBe(2);
      expect(r.stderr).toContain("ETCD_TS_HEAP_GROWING_PERCENT must be an integer in [1, 1000]");
    }
  });
});
