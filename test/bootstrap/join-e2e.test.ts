/**
 * An etcd-ts member joins a running etcd 3.4 cluster end to end: `etcdctl member add`, then
 * etcd-ts starts with --initial-cluster-state existing, learns the log from the leader and
 * publishes itself; `etcdctl member list` shows it started, and it serves what was written.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { serverBinaryFromSpec } from "../harness/member.js";
import { freePorts, killAllChildren, killChild, sleep } from "../harness/processes.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { spawnServer, untilEtcdctl } from "./spawn-server.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-join-e2e-"));
let cluster: Cluster | undefined;

afterAll(async () => {
  await cluster?.destroy();
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!existsSync("/usr/bin/etcd"))("etcd-ts joins a running etcd 3.4 cluster", () => {
  it("is listed as started by etcdctl member list", async () => {
    cluster = await Cluster.start({ binary: serverBinaryFromSpec("/usr/bin/etcd"), size: 3 });
    const endpoint = cluster.members[0]!.clientUrl;
    let put = await runEtcdctl(endpoint, ["put", "before", "join"]);
    for (let i = 0; i < 20 && put.code !== 0; i++) {
      await sleep(250); // a fresh cluster may still be settling its leader
      put = await runEtcdctl(endpoint, ["put", "before", "join"]);
    }
    expect(put.stderr).toBe("");
    const [client, peer] = await freePorts(2);
    const peerUrl = `http://127.0.0.1:${peer}`;
    // etcd refuses reconfiguration ("unhealthy cluster") until its peers have been connected 5 s.
    let added = await runEtcdctl(endpoint, ["member", "add", "ts", `--peer-urls=${peerUrl}`]);
    for (let i = 0; i < 40 && added.code !== 0; i++) {
      await sleep(250);
      added = await runEtcdctl(endpoint, ["member", "add", "ts", `--peer-urls=${peerUrl}`]);
    }
    expect(added.stderr).toBe("");
    const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added.stdout)![1]!;
    const url = `http://127.0.0.1:${client}`;
    const server = spawnServer("etcd-ts", [
      "--name", "ts", "--data-dir", path.join(dir, "ts"),
      "--listen-client-urls", url, "--advertise-client-urls", url,
      "--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl,
      "--initial-cluster", initialCluster, "--initial-cluster-state", "existing", "--initial-cluster-token", "etcd-test-cluster",
    ]);
    try {
      expect((await untilEtcdctl(server, url, ["get", "before", "--print-value-only"], 60_000)).trim()).toBe("join");
      const list = await runEtcdctl(endpoint, ["member", "list"]);
      expect(list.stdout).toMatch(new RegExp(`, started, ts, ${peerUrl}, ${url}, false`));
    } finally {
      await killChild(server.child, "SIGTERM");
    }
  });
});
