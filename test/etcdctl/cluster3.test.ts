/**
 * Cluster commands on 3-member clusters, real etcd 3.4 against the binary under test
 * (cluster-diff-suite.ts explains the normalisation): member list in every output format,
 * endpoint status / health / hashkv of the whole cluster, move-leader, member add (voter and
 * learner, started), promote, remove, update, and their errors.
 *
 * Run: npx vitest run test/etcdctl/cluster3.test.ts (ETCD_BIN=/usr/bin/etcd
 * compares etcd with itself); UPDATE_GOLDEN=1 rewrites golden/cluster3.txt.
 */
import { describe } from "vitest";
import { clusterDiffSuite } from "./cluster-diff-suite.js";

describe("etcdctl on 3-member clusters", () => {
  const s = clusterDiffSuite("cluster3");

  s.case("member list in every output format", async (c) => {
    await c.ensureLeader(0);
    await c.ctl(["member", "list"], { sort: "lines" });
    await c.ctl(["member", "list", "-w", "simple"], { sort: "lines" });
    await c.ctl(["member", "list", "-w", "table"], { sort: "table" });
    await c.ctl(["member", "list", "-w", "json"], { sort: "json" });
    await c.ctl(["member", "list", "-w", "json", "--hex"], { sort: "json" });
    await c.ctl(["member", "list", "-w", "fields"], { sort: "fields" });
    // Any member answers the same.
    await c.ctl(["member", "list", "-w", "table"], { at: 2, sort: "table" });
    await c.ctl(["member", "list"], { at: "all", sort: "lines" });
  });

  s.case("endpoint status, health and hashkv of the whole cluster", async (c) => {
    await c.ensureLeader(0);
    await c.ctl(["put", "c3/a", "1"]);
    await c.ctl(["endpoint", "status", "--cluster"], { sort: "lines" });
    await c.ctl(["endpoint", "status", "--cluster", "-w", "table"], { sort: "table" });
    await c.ctl(["endpoint", "status", "--cluster", "-w", "json"], { sort: "json" });
    await c.ctl(["endpoint", "status", "--cluster", "-w", "fields"], { sort: "fields" });
    await c.ctl(["endpoint", "status", "-w", "table"], { at: 1 });
    await c.ctl(["endpoint", "health", "--cluster"], { sort: "lines" });
    await c.ctl(["endpoint", "health", "--cluster", "-w", "table"], { sort: "table" });
    await c.ctl(["endpoint", "health", "--cluster", "-w", "json"], { sort: "json" });
    await c.ctl(["endpoint", "hashkv", "--cluster"], { sort: "lines" });
    await c.ctl(["endpoint", "hashkv", "--cluster", "-w", "json"], { sort: "json" });
    await c.ctl(["endpoint", "status"], { at: "all", sort: "lines" });
  });

  s.case("move-leader and its errors", async (c) => {
    await c.ensureLeader(0);
    await c.ctl(["move-leader", c.id(1)], { at: "all" });
    await c.ensureLeader(1);
    await c.ctl(["endpoint", "status", "--cluster", "-w", "table"], { sort: "table" });
    // Only a non-leader endpoint given: etcdctl finds no leader among them.
    await c.ctl(["move-leader", c.id(2)], { at: 0 });
    // To the current leader, to an unknown ID, to something that is not an ID.
    await c.ctl(["move-leader", c.id(1)], { at: "all" });
    await c.ctl(["move-leader", "1234"], { at: "all" });
    await c.ctl(["move-leader", "xyz"], { at: "all" });
    await c.ctl(["move-leader"], { at: "all" });
    await c.ctl(["move-leader", c.id(0)], { at: "all" });
    await c.ensureLeader(0);
    await c.ctl(["endpoint", "status", "--cluster"], { sort: "lines" });
  });

  s.case("membership errors", async (c) => {
    await c.ensureLeader(0);
    // Promote a voter; remove, promote, update unknown IDs; malformed IDs.
    await c.ctl(["member", "promote", c.id(1)]);
    await c.ctl(["member", "remove", "1234"]);
    await c.ctl(["member", "promote", "1234"]);
    await c.ctl(["member", "update", "1234", "--peer-urls=http://127.0.0.1:2"]);
    await c.ctl(["member", "remove", "xyz"]);
    await c.ctl(["member", "remove"]);
    // A new member with a peer URL already in use.
    await c.ctl(["member", "add", "dup", `--peer-urls=${c.peerUrl(1)}`]);
    await c.ctl(["member", "add", "dup", "--learner", `--peer-urls=${c.peerUrl(2)}`]);
    await c.ctl(["member", "add", "no-urls"]);
    await c.ctl(["member", "add", "bad", "--peer-urls=not-a-url"]);
    // One learner (never started: its peer URL points at a closed port), then too many learners.
    const learner = c.addedMemberId(await c.ctl(["member", "add", "lone", "--learner", "--peer-urls=http://127.0.0.1:3"], { sort: "lines" }));
    await c.ctl(["member", "list"], { sort: "lines" });
    await c.ctl(["member", "add", "second", "--learner", "--peer-urls=http://127.0.0.1:4"]);
    // A learner that never caught up cannot be promoted, nor lead.
    await c.ctl(["member", "promote", learner]);
    await c.ctl(["move-leader", learner], { at: "all" });
    await c.ctl(["member", "update", learner, "--peer-urls=http://127.0.0.1:5"]);
    await c.ctl(["member", "list", "-w", "json"], { sort: "json" });
    await c.ctl(["member", "update", learner, `--peer-urls=${c.peerUrl(1)}`]);
    await c.ctl(["member", "remove", learner]);
    await c.ctl(["member", "remove", learner]);
    await c.ctl(["member", "update", learner, "--peer-urls=http://127.0.0.1:6"]);
    await c.ctl(["member", "list", "-w", "table"], { sort: "table" });
  });

  s.case("member add --learner, promote, remove, with the new member running", async (c) => {
    await c.ensureLeader(0);
    const learner = await c.addMember({ learner: true });
    await c.ctl(["member", "list"], { sort: "lines" });
    await c.ctl(["member", "list", "-w", "table"], { at: learner, sort: "table" });
    await c.ctl(["get", "c3/a"], { at: learner });
    await c.ctl(["get", "c3/a", "--consistency=s"], { at: learner });
    await c.ctl(["put", "c3/from-learner", "x"], { at: learner });
    await c.ctl(["endpoint", "status", "-w", "table"], { at: learner });
    await c.waitCaughtUp(learner);
    await c.ctl(["member", "promote", c.id(learner)]);
    await c.ctl(["member", "promote", c.id(learner)]);
    await c.ctl(["member", "list", "-w", "table"], { sort: "table" });
    await c.ctl(["put", "c3/four", "voters"], { at: learner });
    await c.ctl(["get", "c3/four"], { at: learner });
    await c.ctl(["member", "remove", c.id(learner)]);
    await c.ctl(["member", "list"], { sort: "lines" });
  });

  s.case("member add (voter) and update, with the new member running", async (c) => {
    await c.ensureLeader(0);
    const voter = await c.addMember({ learner: false });
    await c.waitCaughtUp(voter);
    await c.ctl(["member", "list", "-w", "json"], { sort: "json" });
    await c.ctl(["get", "c3/a", "-w", "json"], { at: voter });
    await c.ctl(["member", "update", c.id(voter), `--peer-urls=${c.peerUrl(voter)}`]);
    await c.ctl(["member", "list"], { sort: "lines" });
    await c.ctl(["endpoint", "health", "--cluster"], { sort: "lines" });
    await c.ctl(["member", "remove", c.id(voter)]);
    await c.ctl(["member", "list", "-w", "fields"], { sort: "fields" });
  });
});
