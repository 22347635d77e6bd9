/**
 * A scripted run of the Raft paper's figure 8: five members, an entry of an old term that a
 * new leader replicates to a majority, then a member holding a conflicting entry of a later term
 * wins the next election. A correct core never commits that old-term entry by counting replicas
 * (it waits for an entry of its own term), so the later leader may overwrite it. With the
 * `commitPreviousTermByCounting` knob the core commits it, and the simulation's leader
 * completeness check must fire.
 *
 * Returns the violation found, or undefined.
 */
import { StateRole, type NodeId } from "../../server/src/raft/types.js";
import { SimCluster, type ClusterOptions } from "./sim-cluster.js";
import { SimRng } from "./sim-rng.js";
import { Violation } from "./safety-checker.js";
import { encodeCommand } from "./kv-model.js";

export function runFigure8Script(
  commitPreviousTermByCounting: boolean,
  trace?: (line: string) => void,
): { violation?: Violation; reachedEnd: boolean } {
  const options: ClusterOptions = {
    electionTicks: 50,
    heartbeatTicks: 1,
    preVote: false,
    checkQuorum: false,
    readOnlyOption: "safe",
    maxSizePerMsgBytes: 1,
    maxInflightMsgs: 1,
    maxUncommittedEntriesBytes: 0,
    snapshotEveryEntries: 0,
    snapshotKeepEntries: 0,
    backgroundFlushRate: 0,
    leaderWriteDelayUnits: 0,
    ...(commitPreviousTermByCounting ? { knobs: { commitPreviousTermByCounting: true } } : {}),
  };
  const noop = (): void => {};
  const cluster = new SimCluster(options, 5, new SimRng(8), {
    onWriteDone: noop, onReadDone: noop, onMemberStopped: noop, onConfChangeApplied: noop, onLeaderElected: noop, onCommandApplied: noop,
  }, trace);
  const [s1, s2, s3, s4, s5] = [1n, 2n, 3n, 4n, 5n].map((id) => cluster.members.get(id)!);
  const net = cluster.network;
  // Elections happen only when the script says so: members never reach their election timeout.
  const run = (units: number, until?: () => boolean): boolean => {
    for (let i = 0; i < units; i++) {
      cluster.stepUnit();
      if (until && until()) return true;
    }
    return until ? until() : true;
  };
  const isolate = (groups: NodeId[][]): void => {
    net.heal(false);
    net.partition(groups);
  };
  const leaderOf = (m: typeof s1): boolean => m.role === StateRole.Leader;
  const step = (what: string, ok: boolean): void => {
    if (!ok) throw new Error(`figure 8 script: ${what} did not happen`);
  };
  try {
    net.setFaults({ dropRate: 0, duplicateRate: 0, minDelayUnits: 1, maxDelayUnits: 1 });
    cluster.startAll();
    cluster.handleAllReadies();
    // S1 leads term 2 and replicates everything (the bootstrap entries and its empty entry).
    s1.node!.campaign();
    step("S1 elected", run(50, () => leaderOf(s1)));
    run(30);
    const base = s1.storage!.lastIndex();
    // S1 appends X (index base+1) and replicates it to S2 only.
    isolate([[s1.id, s2.id], [s3.id, s4.id, s5.id]]);
    cluster.proposeWrite(s1, "x", encodeCommand({ requestId: "x", input: { kind: "put", key: "a", value: "x" } }));
    step("X on S2", run(30, () => s2.storage!.lastIndex() === base + 1));
    // S5 wins term 3 with S3 and S4, appends its empty entry at base+1, and is cut off at once.
    isolate([[s1.id, s2.id], [s3.id, s4.id, s5.id]]);
    s5.node!.campaign();
    step("S5 elected", run(30, () => leaderOf(s5)));
    isolate([[s1.id, s2.id, s3.id, s4.id], [s5.id]]);
    run(5);
    step("S5 holds its own entry at base+1", s5.storage!.lastIndex() === base + 1 && s5.storage!.term(base + 1) > s1.storage!.term(base + 1));
    // S1 restarts (X is on its disk), then wins a later term with S2, S3 and S4 and starts
    // replicating X to S3 and S4.
    cluster.crash(s1);
    cluster.restart(s1);
    for (let i = 0; i < 5 && !leaderOf(s1); i++) {
      s1.node!.campaign();
      run(20, () => leaderOf(s1));
    }
    step("S1 re-elected", leaderOf(s1));
    // Stop the moment S1 commits X (counting replicas), before its own-term entry is on a majority.
    const committedX = run(40, () => s1.commit >= base + 1);
    const s3HasNew = s3.storage!.lastIndex() > base + 1;
    const s4HasNew = s4.storage!.lastIndex() > base + 1;
    cluster.crash(s1);
    net.dropAllFor(s1.id); // what S1 had in flight is lost with it
    trace?.(`X committed by S1: ${committedX}; S3/S4 hold S1's own-term entry: ${s3HasNew}/${s4HasNew}`);
    // S5 comes back and campaigns against S2, S3, S4.
    isolate([[s2.id], [s3.id, s4.id, s5.id]]);
    cluster.crash(s5);
    cluster.restart(s5);
    for (let i = 0; i < 5 && !leaderOf(s5); i++) {
      s5.node!.campaign();
      run(20, () => leaderOf(s5));
    }
    run(50);
    return { reachedEnd: true };
  } catch (e) {
    if (e instanceof Violation) return { violation: e, reachedEnd: false };
    throw e;
  }
}
