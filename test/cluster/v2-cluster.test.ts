/**
 * The v2 keys API (--enable-v2) on three members: writes on a follower go through the leader's
 * log (v2 Request entries) and reach every member's store at the same store index; a quorum read
 * on another follower sees them at once; a long poll on one member is answered by a write on
 * another; a TTL expires on every member through the leader's SYNC; the store's user keys survive
 * a restart behind snapshots (--snapshot-count 20), and etcdctl v2 sees the whole cluster.
 *
 * Knobs: `ETCD_BIN` (default etcd-ts; `/usr/bin/etcd` runs the same test against real etcd).
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { binaryUnderTest, etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

interface Answer {
  status: number;
  etcdIndex: string | null;
  body: { action?: string; errorCode?: number; node?: { value?: string; modifiedIndex?: number; nodes?: unknown[] } };
}

async function call(url: string, method = "GET", form?: string, timeoutMs = 10_000): Promise<Answer> {
  const res = await fetch(url, {
    method,
    body: form,
    headers: form === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" },
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, etcdIndex: res.headers.get("x-etcd-index"), body: (await res.json()) as Answer["body"] };
}

async function until(f: () => Promise<boolean>, ms: number): Promise<boolean> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if (await f().catch(() => false)) return true;
    await sleep(100);
  }
  return false;
}

describe("v2 keys API on a three-member cluster", () => {
  let cluster: Cluster;
  let urls: string[];
  let leader: number;
  let followers: number[];

  beforeAll(async () => {
    cluster = await Cluster.start({ binary: binaryUnderTest(), size: 3, extraArgs: ["--enable-v2", "--snapshot-count", "20"] });
    urls = cluster.clientUrls;
    leader = await cluster.waitLeader();
    followers = [0, 1, 2].filter((i) => i !== leader);
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    await killAllChildren();
  });

  it("a write on a follower reaches every member; a quorum read on another follower sees it", async () => {
    const [f1, f2] = followers as [number, number];
    const w = await call(`${urls[f1]}/v2/keys/c/a`, "PUT", "value=1");
    expect(w.status).toBe(201);
    const q = await call(`${urls[f2]}/v2/keys/c/a?quorum=true`);
    expect(q.body.node?.value).toBe("1");
    for (const u of urls) {
      expect(await until(async () => (await call(`${u}/v2/keys/c/a`)).body.node?.value === "1", 5_000), u).toBe(true);
    }
    const failed = await call(`${urls[f2]}/v2/keys/c/a`, "PUT", "value=2&prevValue=nope");
    expect([failed.status, failed.body.errorCode]).toEqual([412, 101]);
  });

  it("a long poll on one member is answered by a write on another", async () => {
    const poll = call(`${urls[followers[0]!]}/v2/keys/c/w?wait=true`, "GET", undefined, 15_000);
    await sleep(500);
    await call(`${urls[followers[1]!]}/v2/keys/c/w`, "PUT", "value=woken");
    const got = await poll;
    expect([got.body.action, got.body.node?.value]).toEqual(["set", "woken"]);
  });

  it("a TTL expires on every member through the leader's SYNC", async () => {
    const w = await call(`${urls[followers[0]!]}/v2/keys/c/ttl`, "PUT", "value=x&ttl=1");
    expect(w.status).toBe(201);
    const expired = call(`${urls[followers[1]!]}/v2/keys/c/ttl?wait=true&waitIndex=${w.body.node!.modifiedIndex! + 1}`, "GET", undefined, 15_000);
    expect((await expired).body.action).toBe("expire");
    for (const u of urls) expect(await until(async () => (await call(`${u}/v2/keys/c/ttl`)).status === 404, 5_000), u).toBe(true);
  });

  it("user keys survive a restart behind snapshots; every member ends at the same store index", async () => {
    for (let i = 0; i < 30; i++) expect((await call(`${urls[i % 3]}/v2/keys/snap/k${i}`, "PUT", `value=${i}`)).status).toBe(201);
    // Past --snapshot-count 20: the members' .snap files carry the v2 store, user keys included.
    const snapDir = path.join(cluster.members[leader]!.dataDir, "member", "snap");
    const snaps = fs.readdirSync(snapDir).filter((f) => f.endsWith(".snap"));
    expect(snaps.length).toBeGreaterThan(0);
    expect(snaps.some((f) => fs.readFileSync(path.join(snapDir, f)).includes('"/1/snap/k1"'))).toBe(true);
    const victim = followers[0]!;
    await cluster.restart(victim);
    expect(await until(async () => (await call(`${urls[victim]}/v2/keys/snap?recursive=true`)).body.node?.nodes?.length === 30, 15_000)).toBe(true);
    const indexes = await Promise.all(urls.map(async (u) => (await call(`${u}/v2/keys/snap/k29?quorum=true`)).etcdIndex));
    expect(new Set(indexes).size).toBe(1);
  });

  it("/v2/members: add, update, remove as etcd 3.4 answers them", async () => {
    const json = async (url: string, method: string, body?: unknown): Promise<{ status: number; text: string }> => {
      const res = await fetch(url, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(15_000) });
      return { status: res.status, text: await res.text() };
    };
    // Strict reconfiguration refuses changes (500, etcd's "unhealthy cluster") until the peers
    // have been connected for 5 s.
    await sleep(5_500);
    const u = urls[followers[0]!]!;
    const list = JSON.parse((await json(`${u}/v2/members`, "GET")).text) as { members: { id: string; peerURLs: string[] }[] };
    expect(list.members.length).toBe(3);
    const self = list.members[0]!;
    expect((await json(`${u}/v2/members/${self.id}`, "PUT", { peerURLs: self.peerURLs })).status).toBe(204);
    expect(await json(`${u}/v2/members`, "POST", { peerURLs: self.peerURLs })).toEqual({ status: 409, text: '{"message":"membership: peerURL exists"}' });
    const added = await json(`${u}/v2/members`, "POST", { peerURLs: ["http://127.0.0.1:1"] });
    expect(added.status).toBe(201);
    const id = (JSON.parse(added.text) as { id: string; name: string; clientURLs: string[] }).id;
    expect(JSON.parse(added.text)).toEqual({ id, name: "", peerURLs: ["http://127.0.0.1:1"], clientURLs: [] });
    expect((await json(`${u}/v2/members/${id}`, "DELETE")).status).toBe(204);
    expect(await json(`${u}/v2/members/${id}`, "DELETE")).toEqual({ status: 410, text: `{"message":"Member permanently removed: ${id}"}` });
    expect(await json(`${u}/v2/members/abc`, "PUT", { peerURLs: ["http://127.0.0.1:2"] })).toEqual({ status: 404, text: '{"message":"No such member: abc"}' });
  });

  it("etcdctl v2 sees the cluster", async () => {
    const res = await runEtcdctl(urls.join(","), ["cluster-health"], { env: { ETCDCTL_API: "2" } });
    expect(res.stdout).toContain("cluster is healthy");
    expect(res.stdout.match(/is healthy: got healthy result/g)?.length).toBe(3);
    const ls = await runEtcdctl(urls[leader]!, ["ls", "--sort", "/c"], { env: { ETCDCTL_API: "2" } });
    expect(ls.stdout).toBe("/c/a\n/c/w\n");
  });
});

const reference = referenceEtcdPath();

describe.skipIf(reference === undefined)("v2 keys API on a mixed cluster (etcd-ts, etcd 3.4, etcd-ts)", () => {
  let cluster: Cluster;
  let urls: string[];

  beforeAll(async () => {
    const etcd = serverBinaryFromSpec(reference);
    cluster = await Cluster.start({ binaries: [etcdTsBinary(), etcd, etcdTsBinary()], extraArgs: ["--enable-v2"] });
    urls = cluster.clientUrls;
    await cluster.waitLeader();
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
    await killAllChildren();
  });

  it("writes on either binary reach the other at the same store index; a TTL expires on both", async () => {
    expect((await call(`${urls[0]}/v2/keys/m/a`, "PUT", "value=from-ts")).status).toBe(201);
    expect((await call(`${urls[1]}/v2/keys/m/b`, "POST", "value=from-etcd")).status).toBe(201);
    const t = await call(`${urls[2]}/v2/keys/m/ttl`, "PUT", "value=x&ttl=1");
    const expired = await call(`${urls[1]}/v2/keys/m/ttl?wait=true&waitIndex=${t.body.node!.modifiedIndex! + 1}`, "GET", undefined, 15_000);
    expect(expired.body.action).toBe("expire");
    const answers = await Promise.all(urls.map((u) => call(`${u}/v2/keys/m?recursive=true&sorted=true&quorum=true`)));
    expect(answers.every((a) => JSON.stringify(a.body) === JSON.stringify(answers[0]!.body))).toBe(true);
    expect(new Set(answers.map((a) => a.etcdIndex)).size).toBe(1);
    expect(answers[0]!.body.node?.nodes?.length).toBe(2);
  });
});
