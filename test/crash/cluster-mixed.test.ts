/**
 * Mixed clusters: members of two binaries in one cluster, speaking etcd 3.4's peer protocol.
 *   (a) a "new" member joins a running 3-member cluster of "old" members (member add, start with
 *       --initial-cluster-state existing), then carries the quorum while an old member is down;
 *   (b) the same with the roles swapped (an old member joins a cluster of new ones);
 *   (c) migration under load: a live 3-member "old" cluster is replaced member by member (add a
 *       new member as learner, wait until it caught up, promote it, move the leadership away
 *       from the old member if it leads (or not: the seed decides), remove the old member, stop
 *       it) while the clients keep going.
 * Each scenario runs the recording clients and watchers of cluster-clients.ts throughout and ends
 * with convergence (same revision and HashKV everywhere) and the history judge: every
 * acknowledged write is there, watches are complete and ordered, the history is linearizable.
 *
 * Binaries: `ETCD_BIN` is "old" (default: the reference etcd, /usr/bin/etcd), `NEW_BIN` is "new"
 * (default etcd-ts). Run all-etcd with NEW_BIN=/usr/bin/etcd to check the test itself. `SEED` as
 * everywhere (printed as seed=N on failure). Part of the default run; all-etcd:
 * NEW_BIN=/usr/bin/etcd npx vitest run test/crash/cluster-mixed.test.ts
 */
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { referenceEtcdPath, serverBinaryFromSpec, type ServerBinary } from "../harness/member.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { killAllChildren, sleep } from "../harness/processes.js";
import { SeededRandom, testSeed } from "../harness/seeded-random.js";
import { HistoryClients, judgeHistory, Watcher } from "./cluster-clients.js";

const PREFIX = "mx/";
const timingFlags = ["--heartbeat-interval=50", "--election-timeout=500"];
const oldBinary: ServerBinary = serverBinaryFromSpec(process.env.ETCD_BIN ?? referenceEtcdPath() ?? "/usr/bin/etcd");
const newBinary: ServerBinary = serverBinaryFromSpec(process.env.NEW_BIN);

interface Scenario {
  cluster: Cluster;
  clients: HistoryClients;
  watchers: Watcher[];
  log: string[];
}

async function withScenario(name: string, seed: number, initial: ServerBinary, body: (s: Scenario, rng: SeededRandom) => Promise<void>): Promise<void> {
  const rng = new SeededRandom(seed);
  const log: string[] = [`${name}: seed=${seed}, old=${oldBinary.kind} (${oldBinary.command}), new=${newBinary.kind}`];
  let cluster: Cluster | undefined;
  const watchers: Watcher[] = [];
  let clients: HistoryClients | undefined;
  try {
    cluster = await Cluster.start({ binary: initial, size: 3, namePrefix: "x", clusterToken: `mixed-${seed}`, extraArgs: timingFlags });
    const c = cluster;
    clients = new HistoryClients({
      clients: 4,
      keys: Array.from({ length: 6 }, (_, i) => `${PREFIX}k${i}`),
      // Every member in the membership; a learner refuses client requests (failed calls, the
      // client moves on), as it does for any etcd client.
      endpoints: () => c.clientUrls,
      seed,
    });
    for (let i = 0; i < 3; i++) watchers.push(new Watcher(`watcher on ${c.members[i]!.name}`, c.members[i]!.clientUrl, PREFIX));
    clients.start();
    await body({ cluster: c, clients, watchers, log }, rng);
    await clients.stop();
    const converged = await c.waitConverged(30_000);
    log.push(`converged at revision ${converged.revision}; ${clients.acknowledged} ops acknowledged, ${clients.failed} failed`);
    const state = await c.withAnswering((g) => g.range(PREFIX, { rangeEnd: "mx0" }));
    // Watchers of removed members stopped where their member did: only the live ones must finish.
    const liveUrls = new Set(c.live.map((i) => c.members[i]!.clientUrl));
    const records = [];
    for (const w of watchers.splice(0)) {
      if (liveUrls.has(w.endpoint) && !(await w.waitFor(converged.revision, 20_000))) {
        throw new Error(`${w.label} stuck at revision ${w.maxRevision} (final ${converged.revision})`);
      }
      records.push(await w.stop());
    }
    const judgement = judgeHistory({
      history: clients.history,
      watches: records,
      finalRevision: converged.revision,
      finalState: state.kvs.map((kv) => ({ key: kv.key, value: kv.value, modRevision: Number(kv.modRevision) })),
    });
    log.push(`judged ${clients.history.length} ops (${judgement.unknown} unknown) by ${judgement.linearizability}`);
    expect(judgement.problems).toEqual([]);
    if (process.env.VERBOSE === "1") console.log(log.join("\n"));
  } catch (err) {
    console.error(`${name} failed: seed=${seed}\n${log.join("\n")}\n${cluster?.logTails(2_500) ?? ""}`);
    throw err;
  } finally {
    await clients?.stop();
    await Promise.all(watchers.map((w) => w.stop()));
    await cluster?.destroy();
  }
}

/** Waits until member `i` has applied at least the leader's revision (bounded). */
async function waitCaughtUp(cluster: Cluster, i: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const head = Number((await cluster.withAnswering((g) => g.range("\u0000", { limit: 1n }))).header.revision);
      const mine = Number((await cluster.grpc(i).range("\u0000", { serializable: true, limit: 1n })).header.revision);
      if (mine >= head) return;
    } catch {
      /* try again */
    }
    if (Date.now() > deadline) throw new Error(`member ${i} did not catch up within ${timeoutMs}ms`);
    await sleep(100);
  }
}

/** Grant, keep alive and look up a lease through `endpoint` with etcdctl (bounded retries). */
async function leaseThrough(endpoint: string): Promise<void> {
  const ctl = async (args: string[]): Promise<string> => {
    for (let attempt = 0; ; attempt++) {
      const r = await runEtcdctl(endpoint, ["--command-timeout=3s", ...args]);
      if (r.code === 0) return r.stdout;
      if (attempt >= 4) throw new Error(`etcdctl ${args.join(" ")} at ${endpoint}: ${r.stderr}`);
      await sleep(300);
    }
  };
  const id = /lease ([0-9a-f]+) granted/.exec(await ctl(["lease", "grant", "60"]))?.[1];
  expect(id, "lease grant").toBeDefined();
  expect(await ctl(["lease", "keep-alive", "--once", id!])).toMatch(new RegExp(`lease ${id} keepalived with TTL\\(60\\)`));
  expect(await ctl(["lease", "timetolive", id!])).toMatch(new RegExp(`lease ${id} granted with TTL\\(60s\\), remaining\\(\\d+s\\)`));
}

/** A joined member carries the quorum: with one old member down, writes still commit. */
async function joinThenLoseAnOldMember(s: Scenario, rng: SeededRandom, joiner: ServerBinary): Promise<void> {
  const { cluster, log } = s;
  await sleep(rng.int(200, 600));
  const i = await cluster.addMember({ binary: joiner });
  s.watchers.push(new Watcher(`watcher on ${cluster.members[i]!.name}`, cluster.members[i]!.clientUrl, PREFIX));
  log.push(`${joiner.kind} member ${cluster.members[i]!.name} joined as a voter`);
  await waitCaughtUp(cluster, i);
  // 4 voters, quorum 3: with one old member down the joined one is needed for every commit.
  const leader = await cluster.waitLeader();
  const victim = rng.next() < 0.5 ? leader : [0, 1, 2].find((j) => j !== leader)!;
  await cluster.kill(victim);
  const before = s.clients.acknowledged;
  await sleep(rng.int(1_500, 2_500));
  // A killed leader costs an election first; on a loaded machine that and the clients' retries
  // can outlast the window, so wait (bounded) for the first acknowledgement.
  const deadline = Date.now() + 10_000;
  while (s.clients.acknowledged === before && Date.now() < deadline) await sleep(100);
  log.push(`killed ${cluster.members[victim]!.name} (leader ${leader}); ${s.clients.acknowledged - before} ops acknowledged while it was down`);
  expect(s.clients.acknowledged - before, "no progress with the joined member in the quorum").toBeGreaterThan(0);
  // Writes through the joined member itself.
  await cluster.grpc(i).put(`${PREFIX}via-joined`, "yes");
  const r = await cluster.grpc(i).range(`${PREFIX}via-joined`);
  expect(r.kvs[0]?.value).toBe("yes");
  // Leases through the joined member: keep-alive and time-to-live travel to the leader over the
  // peer port (/leases, /leases/internal) whichever binary leads.
  await leaseThrough(cluster.members[i]!.clientUrl);
  await cluster.restart(victim);
  await sleep(rng.int(300, 800));
}

describe("mixed clusters", () => {
  const seed = testSeed();
  afterAll(async () => {
    await killAllChildren();
  });

  it(`(a) a new member joins a running old cluster (seed=${seed})`, async () => {
    await withScenario("join new into old", seed, oldBinary, (s, rng) => joinThenLoseAnOldMember(s, rng, newBinary));
  }, 180_000);

  it(`(b) an old member joins a running new cluster (seed=${seed})`, async () => {
    await withScenario("join old into new", seed, newBinary, (s, rng) => joinThenLoseAnOldMember(s, rng, oldBinary));
  }, 180_000);

  it(`(c) migration under load: old members replaced one by one through learners (seed=${seed})`, async () => {
    await withScenario("migration", seed, oldBinary, async (s, rng) => {
      const { cluster, log } = s;
      for (let old = 0; old < 3; old++) {
        await sleep(rng.int(200, 600));
        const t0 = Date.now();
        const i = await cluster.addMember({ binary: newBinary, learner: true });
        await waitCaughtUp(cluster, i);
        await cluster.promote(i);
        // A learner refuses watches; the watcher starts once it is a voter (from revision 1).
        s.watchers.push(new Watcher(`watcher on ${cluster.members[i]!.name}`, cluster.members[i]!.clientUrl, PREFIX));
        const leader = await cluster.waitLeader();
        let moved = "";
        if (leader === old && rng.next() < 0.5) {
          await cluster.moveLeader(i);
          moved = `, leadership moved to ${cluster.members[i]!.name}`;
        }
        await cluster.removeMember(old);
        log.push(
          `${cluster.members[old]!.name} (leader: ${leader === old}) replaced by ${newBinary.kind} ${cluster.members[i]!.name} in ${Date.now() - t0}ms${moved}; ` +
            `${s.clients.acknowledged} ops acknowledged so far`,
        );
        await cluster.waitLeader();
      }
      const kinds = cluster.live.map((i) => cluster.members[i]!.options.binary.kind);
      expect(kinds).toEqual([newBinary.kind, newBinary.kind, newBinary.kind]);
      await sleep(rng.int(300, 800));
    });
  }, 240_000);
});
