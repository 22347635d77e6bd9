/**
 * Crash test: concurrent writers put (and now and then delete) keys in one member, the member is
 * SIGKILLed at a seeded random moment under load, restarted on the same data dir, and checked
 * (the judge is history-check.ts):
 *
 *  1. durability: every acknowledged put or delete (key, value, revision from its response
 *     header) is in the history at exactly that revision, and the restarted member's revision
 *     is at least the highest acknowledged one;
 *  2. revisions: acknowledged revisions are unique, increase strictly per writer (also across
 *     restarts), and the full history read back with `etcdctl watch --rev=1` has exactly one
 *     event per revision 2..head (no gaps, no repeats) -- every revision is one of our writes,
 *     acknowledged or in flight at the kill (it must then be one we attempted);
 *  3. the current state (a prefix Range) equals the last event of every key in that history;
 *  4. the restarted member keeps accepting writes (the next cycle writes again, and a final put
 *     must succeed).
 *
 * Knobs: `ETCD_BIN` (server under test; default etcd-ts, `/usr/bin/etcd` validates the test
 * itself against real etcd), `SEED` (kill timing; printed as seed=N on failure), `CYCLES`
 * (kill/restart cycles, default 3), `WRITERS` (concurrent writers, default 8).
 *
 * Writers speak gRPC through test/harness/grpc-lite.ts (one HTTP/2 connection each), which is
 * far faster than one etcdctl process per write.
 */
import { afterAll, describe, expect, it } from "vitest";
import { binaryUnderTest, Member, startMember } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";
import { SeededRandom, testSeed } from "../harness/seeded-random.js";
import { checkHistory, type Ack } from "./history-check.js";
import { readHistory } from "./history-read.js";
import { envInt, startWriters } from "./writers.js";

const PREFIX = "crash/";
const KEYS_PER_WRITER = 16;



describe("crash: SIGKILL under write load, restart, verify", () => {
  const seed = testSeed();
  const cycles = envInt("CYCLES", 3);
  const writers = envInt("WRITERS", 8);
  let member: Member | undefined;

  afterAll(async () => {
    await member?.destroy();
    await killAllChildren();
  });

  it(
    `keeps every acknowledged write and a gap-free revision history (seed=${seed})`,
    async () => {
      const rng = new SeededRandom(seed);
      const acks: Ack[] = [];
      const attempted = new Set<string>();
      const log: string[] = [];
      try {
        member = await startMember({ binary: binaryUnderTest(), name: "crash", clusterToken: "crash-token" });
        for (let cycle = 1; cycle <= cycles; cycle++) {
          const ackedBefore = acks.length;
          const load = startWriters({ urls: [member.clientUrl], writers, cycle, prefix: PREFIX, keysPerWriter: KEYS_PER_WRITER, deleteEvery: 7, retryDelayMs: 20 }, acks, attempted);
          const killAfterMs = rng.int(300, 1_500);
          await sleep(killAfterMs);
          await member.kill("SIGKILL");
          const errors = await load.stop();
          const cycleAcks = acks.length - ackedBefore;
          const maxAcked = acks.reduce((m, a) => Math.max(m, a.revision), 0);
          log.push(`cycle ${cycle}: killed after ${killAfterMs}ms, ${cycleAcks} acked writes, ${errors} failed, max acked revision ${maxAcked}`);
          expect(cycleAcks, `cycle ${cycle}: no write was acknowledged before the kill`).toBeGreaterThan(0);

          await member.start();
          const client = member.grpc();
          const head = Number((await client.range(`${PREFIX}`, { rangeEnd: "crash0", limit: 1n })).header.revision);
          log.push(`cycle ${cycle}: restarted, head revision ${head}`);

          const history = await readHistory(member.clientUrl, PREFIX, head);
          const state = await client.range(PREFIX, { rangeEnd: "crash0" });
          const problems = checkHistory({
            acks,
            attempted,
            history,
            head,
            state: state.kvs.map((kv) => ({ key: kv.key, value: kv.value, modRevision: Number(kv.modRevision) })),
          });
          expect(problems, `cycle ${cycle}: history check`).toEqual([]);
        }
        // 4: still writable after the last restart.
        const header = await member.grpc().put(`${PREFIX}final`, "ok");
        expect(Number(header.revision)).toBeGreaterThan(acks.reduce((m, a) => Math.max(m, a.revision), 0));
      } catch (err) {
        console.error(`crash test failed: seed=${seed}\n${log.join("\n")}\n${member?.logTail() ?? ""}`);
        throw err;
      }
      console.log(`crash test seed=${seed}\n${log.join("\n")}`);
    },
    300_000,
  );
});
