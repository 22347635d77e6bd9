/**
 * --initial-cluster-state existing against a running etcd 3.4 cluster: the member list comes
 * from the real members' peer port (/members), and the IDs the joining member takes are the ones
 * etcd assigned (`etcdctl member add` prints them). Each refusal carries etcd's text, compared
 * with what real etcd logs for the same flags.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { serverBinaryFromSpec } from "../harness/member.js";
import { freePorts, killAllChildren } from "../harness/processes.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { spawnServer } from "./spawn-server.js";
import { parseMembers, planStart } from "../../server/src/etcdmain/cluster-bootstrap.js";
import { resolveConfig, type ServerConfig } from "../../server/src/etcdmain/config.js";
import { createLogger } from "../../server/src/pkg/logger.js";

const logger = createLogger({ level: "error" });
const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-join-"));
let cluster: Cluster;

function config(args: string[]): ServerConfig {
  const inv = resolveConfig(args, {});
  if (inv.kind !== "run") throw new Error("not a run");
  return inv.config;
}

/** Flags for a member "new" joining with `initialCluster`, on fresh ports and a fresh data dir. */
async function joinArgs(initialCluster: (peerUrl: string) => string, peerPort?: number): Promise<{ args: string[]; peerUrl: string }> {
  const [client, peer] = await freePorts(2);
  const peerUrl = `http://127.0.0.1:${peerPort ?? peer}`;
  const args = [
    "--name", "new", "--data-dir", mkdtempSync(path.join(dir, "new-")),
    "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
    "--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl,
    "--initial-cluster", initialCluster(peerUrl), "--initial-cluster-state", "existing", "--initial-cluster-token", "etcd-test-cluster",
  ];
  return { args, peerUrl };
}

async function refusal(args: string[]): Promise<string> {
  const cfg = config(args);
  return planStart(cfg, path.join(cfg.dataDir, "member", "wal"), { logger }).then(
    () => "started",
    (err: Error) => err.message,
  );
}

/** What real etcd logs when it refuses the same flags (it exits 1). */
async function etcdRefusal(args: string[]): Promise<{ code: number | null; output: string }> {
  const server = spawnServer("etcd", args);
  const code = await server.exited();
  return { code, output: server.output() };
}

const m0 = (): string => `m0=${cluster.members[0]!.listenPeerUrl}`;

describe.skipIf(!existsSync("/usr/bin/etcd"))("joining a running etcd 3.4 cluster", () => {
  beforeAll(async () => {
    cluster = await Cluster.start({ binary: serverBinaryFromSpec("/usr/bin/etcd"), size: 1 });
  });
  afterAll(async () => {
    await cluster?.destroy();
    await killAllChildren();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a cluster the running one does not match, with etcd's texts", async () => {
    // Not added yet: the running cluster has one member, the initial cluster two.
    const { args } = await joinArgs((p) => `${m0()},new=${p}`);
    const ours = await refusal(args);
    expect(ours).toMatch(/^error validating peerURLs \{ClusterID:[0-9a-f]+ Members:\[&\{ID:[0-9a-f]+ RaftAttributes:\{PeerURLs:\[http:\/\/127\.0\.0\.1:\d+\] IsLearner:false\} Attributes:\{Name:m0 ClientURLs:\[http:\/\/127\.0\.0\.1:\d+\]\}\}\] RemovedMemberIDs:\[\]\}: member count is unequal$/);
    const real = await etcdRefusal(args);
    expect(real.code).toBe(1);
    expect(real.output).toContain(ours);

    // Nobody to ask.
    const [dead] = await freePorts(1);
    const lonely = await joinArgs((p) => `gone=http://127.0.0.1:${dead},new=${p}`);
    const ours2 = await refusal(lonely.args);
    expect(ours2).toBe("cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs");
    expect((await etcdRefusal(lonely.args)).output).toContain(ours2);

    // Not in the initial cluster.
    const missing = await joinArgs(() => m0());
    expect(await refusal(missing.args)).toBe(`couldn't find local name "new" in the initial cluster configuration`);
  });

  it("refuses to start a new cluster as a member the running cluster already has", async () => {
    const peer = cluster.members[0]!.listenPeerUrl;
    const [client] = await freePorts(1);
    // m0 again (same peer URL and token: same ID); the other listed member reaches the real m0.
    const args = [
      "--name", "m0", "--data-dir", mkdtempSync(path.join(dir, "again-")),
      "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
      "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
      "--initial-cluster", `m0=${peer},alias=${peer.replace("127.0.0.1", "localhost")}`, "--initial-cluster-token", "etcd-test-cluster",
    ];
    const list = await runEtcdctl(cluster.members[0]!.clientUrl, ["member", "list"]);
    const id = /^([0-9a-f]+), started, m0,/m.exec(list.stdout)![1];
    expect(await refusal(args)).toBe(`member ${id} has already been bootstrapped`);
  });

  it("takes the member and cluster IDs etcd assigned (etcdctl member add)", async () => {
    const [newPeer] = await freePorts(1);
    const endpoint = cluster.members[0]!.clientUrl;
    const added = await runEtcdctl(endpoint, ["member", "add", "new", `--peer-urls=http://127.0.0.1:${newPeer}`]);
    expect(added.code).toBe(0);
    // etcdctl prints the IDs with %16x: an ID with a leading zero nibble is padded with spaces.
    const m = /Member +([0-9a-f]+) added to cluster +([0-9a-f]+)/.exec(added.stdout);
    expect(m).not.toBeNull();

    const { args } = await joinArgs((p) => `${m0()},new=${p}`, newPeer);
    const cfg = config(args);
    const plan = await planStart(cfg, path.join(cfg.dataDir, "member", "wal"), { logger });
    expect(plan.joinExisting?.memberId.toString(16)).toBe(m![1]);
    expect(plan.joinExisting?.clusterId.toString(16)).toBe(m![2]);
    expect(plan.remotes?.map((r) => r.name).sort()).toEqual(["", "m0"]);

    // A peer URL the running cluster does not have for any member.
    const [other] = await freePorts(1);
    const wrong = await joinArgs((p) => `${m0()},new=${p}`, other);
    const ours = await refusal(wrong.args);
    expect(ours).toContain(`: PeerURLs: no match found for existing member (${m![1]}, [http://127.0.0.1:${newPeer}]), last resolver error (resolved urls: "http://127.0.0.1:`);
    expect(ours).toMatch(/^error validating peerURLs \{ClusterID:/);
    const real = await etcdRefusal(wrong.args);
    expect(real.code).toBe(1);
    expect(real.output).toContain(`PeerURLs: no match found for existing member (${m![1]}, [http://127.0.0.1:${newPeer}])`);
    await runEtcdctl(endpoint, ["member", "remove", m![1]!]);
  });
});

describe("the /members body", () => {
  it("keeps 64-bit IDs exact", () => {
    const members = parseMembers('[{"id":18446744073709551615,"name":"a","peerURLs":["http://x:1"],"clientURLs":[]},{"id":10276657743932975437,"peerURLs":["http://y:2"],"isLearner":true}]');
    expect(members[0]!.id).toBe(18446744073709551615n);
    expect(members[1]!).toEqual({ id: 10276657743932975437n, name: "", peerUrls: ["http://y:2"], clientUrls: [], isLearner: true });
    expect(() => parseMembers('[{"id":18446744073709551616}]')).toThrow();
    expect(() => parseMembers('{"id":1}')).toThrow();
  });
});
