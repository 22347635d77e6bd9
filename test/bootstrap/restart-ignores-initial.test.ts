/**
 * A member with a WAL restarts from it whatever --initial-cluster, --initial-cluster-state and
 * --initial-cluster-token say (etcd-ts warns that it ignores them); real etcd 3.4 alike.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePorts, killAllChildren, killChild } from "../harness/processes.js";
import { spawnServer, untilEtcdctl } from "./spawn-server.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-restart-"));

afterAll(async () => {
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

describe.each(["etcd-ts", "etcd"] as const)("restart of %s", (which) => {
  it.skipIf(which === "etcd" && !existsSync("/usr/bin/etcd"))("starts from the WAL and ignores the initial cluster flags", async () => {
    const [client, peer, dead] = await freePorts(3);
    const url = `http://127.0.0.1:${client}`;
    const peerUrl = `http://127.0.0.1:${peer}`;
    const base = [
      "--name", "r", "--data-dir", path.join(dir, which),
      "--listen-client-urls", url, "--advertise-client-urls", url,
      "--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl,
    ];
    const first = spawnServer(which, [...base, "--initial-cluster", `r=${peerUrl}`]);
    try {
      await untilEtcdctl(first, url, ["put", "k", "before-restart"]);
    } finally {
      await killChild(first.child, "SIGTERM");
    }
    // Flags that would be refused for a member without a WAL: another cluster, "existing" with
    // nobody to ask, another token.
    const second = spawnServer(which, [
      ...base,
      "--initial-cluster", `r=${peerUrl},gone=http://127.0.0.1:${dead}`,
      "--initial-cluster-state", "existing",
      "--initial-cluster-token", "another-token",
    ]);
    try {
      expect((await untilEtcdctl(second, url, ["get", "k", "--print-value-only"])).trim()).toBe("before-restart");
      if (which === "etcd-ts") expect(second.output()).toContain("initial cluster flags are ignored: the member restarts from its WAL");
    } finally {
      await killChild(second.child, "SIGTERM");
    }
  });
});
