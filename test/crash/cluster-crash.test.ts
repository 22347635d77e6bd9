/**
 * Cluster crash test: three members under concurrent write load (writers spread over the
 * members, failing over to the next member on errors); each cycle SIGKILLs one member -- the
 * leader or a follower, as the seed decides -- at a random moment, lets the others carry on,
 * restarts it on its data dir, and then checks:
 *  - the same history judge as the single-member crash test (history-check.ts): every
 *    acknowledged write at its revision, no revision gaps or repeats, state = last events;
 *  - convergence: every member reaches the same revision and the same HashKV at it.
 *
 * Knobs: `ETCD_BIN` (default etcd-ts; `/usr/bin/etcd` for real etcd), `SEED` (printed as
 * seed=N on failure), `CYCLES` (default 2), `WRITERS` (default 6).
 */
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { binaryUnderTest } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";
import { SeededRandom, testSeed } from "../harness/seeded-random.js";
import { checkHistory, type Ack } from "./history-check.js";
import { readHistory } from "./history-read.js";
import { envInt, startWriters } from "./writers.js";

const PREFIX = "ccrash/";
const PREFIX_END = "ccrash0";



describe("cluster crash: SIGKILL one of three members under load", () => {
  const seed = testSeed();
  const cycles = envInt("CYCLES", 2);
  const writers = envInt("WRITERS", 6);
  let cluster: Cluster | undefined;

  afterAll(async () => {
    await cluster?.destroy();
    await killAllChildren();
  });

  it(
    `keeps acknowledged writes and converges (seed=${seed})`,
    async () => {
      const rng = new SeededRandom(seed);
      const acks: Ack[] = [];
      const attempted = new Set<string>();
      const log: string[] = [];
      try {
        cluster = await Cluster.start({ binary: binaryUnderTest(), size: 3, namePrefix: "cc", clusterToken: "cluster-crash" });
        for (let cycle = 1; cycle <= cycles; cycle++) {
          const ackedBefore = acks.length;
          const load = startWriters({ urls: cluster.clientUrls, writers, cycle, prefix: PREFIX, keysPerWriter: 8, deleteEvery: 5, retryDelayMs: 50 }, acks, attempted);
          await sleep(rng.int(300, 1_200));
          const leader = await cluster.leaderIndex();
          const killLeader = rng.next() < 0.5;
          const victim = killLeader && leader >= 0 ? leader : (leader + 1 + rng.int(0, 1)) % 3;
          await cluster.members[victim]!.kill("SIGKILL");
          const downMs = rng.int(300, 1_500);
          await sleep(downMs);
          await cluster.members[victim]!.start();
          await sleep(300);
          const errors = await load.stop();
          log.push(
            `cycle ${cycle}: leader was member ${leader}, killed member ${victim} for ${downMs}ms; ` +
              `${acks.length - ackedBefore} acked writes, ${errors} failed`,
          );
          expect(acks.length - ackedBefore, `cycle ${cycle}: nothing acknowledged`).toBeGreaterThan(0);

          const head = Number((await cluster.grpc(0).range(PREFIX, { rangeEnd: PREFIX_END, limit: 1n })).header.revision);
          const history = await readHistory(cluster.members[0]!.clientUrl, PREFIX, head);
          const state = await cluster.grpc(0).range(PREFIX, { rangeEnd: PREFIX_END });
          const problems = checkHistory({
            acks,
            attempted,
            history,
            head,
            state: state.kvs.map((kv) => ({ key: kv.key, value: kv.value, modRevision: Number(kv.modRevision) })),
          });
          expect(problems, `cycle ${cycle}: history check`).toEqual([]);

          // Convergence: each member reaches head (serializable reads show its own applied state)
          // and hashes the same store at it.
          const hashes: string[] = [];
          for (let i = 0; i < 3; i++) {
            const deadline = Date.now() + 20_000;
            let rev = 0;
            while (Date.now() < deadline) {
              rev = Number((await cluster.grpc(i).range(PREFIX, { rangeEnd: PREFIX_END, limit: 1n, serializable: true })).header.revision);
              if (rev >= head) break;
              await sleep(50);
            }
            expect(rev, `member ${i} stuck at revision ${rev}, head ${head}`).toBeGreaterThanOrEqual(head);
            const h = await cluster.grpc(i).hashKv(BigInt(head));
            hashes.push(`${h.hash}@${head}`);
          }
          log.push(`cycle ${cycle}: head ${head}, hashes ${hashes.join(" ")}`);
          expect(new Set(hashes).size, `members disagree: ${hashes.join(" ")}`).toBe(1);
        }
        const header = await cluster.grpc(rng.int(0, 2)).put(`${PREFIX}final`, "ok");
        expect(Number(header.revision)).toBeGreaterThan(acks.reduce((m, a) => Math.max(m, a.revision), 0));
      } catch (err) {
        const tails = cluster?.members.map((m) => m.logTail(3_000)).join("\n") ?? "";
        console.error(`cluster crash test failed: seed=${seed}\n${log.join("\n")}\n${tails}`);
        throw err;
      }
      console.log(`cluster crash test seed=${seed}\n${log.join("\n")}`);
    },
    300_000,
  );
});
