/**
 * Micro-benchmark: entries per second committed (and applied on the leader) through a 3-member
 * in-memory Raft cluster (MemoryStorage, messages delivered in-process, no fsync), with
 * proposals in batches.
 *
 *   npx tsx test/bench/raft-commit.ts [--batch=100] [--payload=128] [--window=8] [--runs=5] [--seconds=2]
 *
 * At most `window` batches are proposed and not yet committed at any time.
 *
 * Prints each run and the medians, per wall-clock second and per CPU second of this process (the
 * latter is steadier on a machine shared with other work).
 */
import {
  EntryType, MemoryStorage, RawNode, StateRole, decodeConfChange, seededRng, type Message, type NodeId,
} from "../../server/src/raft/index.js";

function arg(name: string, def: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.slice(name.length + 3)) : def;
}

const batch = arg("batch", 100);
const payloadBytes = arg("payload", 128);
const runs = arg("runs", 5);
const seconds = arg("seconds", 2);
const window = arg("window", 8);

interface Member { id: NodeId; rn: RawNode; storage: MemoryStorage; applied: number }

function makeCluster(): Member[] {
  const ids = [1n, 2n, 3n];
  return ids.map((id) => {
    const storage = new MemoryStorage();
    storage.applySnapshot({ metadata: { index: 1, term: 1, confState: { voters: ids, learners: [] } }, data: new Uint8Array(0) });
    storage.setHardState({ term: 1, vote: 0n, commit: 1 });
    const rn = new RawNode({
      id, electionTicks: 10, heartbeatTicks: 1, maxSizePerMsgBytes: 1 << 20, maxInflightMsgs: 256,
      maxCommittedSizePerReadyBytes: 64 << 20, preVote: true, checkQuorum: true,
    }, { storage, rng: seededRng(Number(id)) });
    return { id, rn, storage, applied: 0 };
  });
}

/** One driver pass over every member: handle its Ready, then deliver everything it sent. */
function pump(members: Member[], byId: Map<NodeId, Member>): number {
  const outbox: Message[] = [];
  let work = 0;
  for (const m of members) {
    if (!m.rn.hasReady()) continue;
    work++;
    const rd = m.rn.ready();
    if (rd.hardState) m.storage.setHardState(rd.hardState);
    if (rd.snapshot) m.storage.applySnapshot(rd.snapshot);
    m.storage.append(rd.entries);
    for (const msg of rd.messages) outbox.push(msg);
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) m.rn.applyConfChange(decodeConfChange(e.data));
      else if (e.data.byteLength > 0) m.applied++;
    }
    m.rn.advance(rd);
  }
  for (const msg of outbox) byId.get(msg.to)!.rn.step(msg);
  return work + outbox.length;
}

/** Entries committed per wall-clock second and per CPU second of this process (less sensitive to a busy machine). */
function runOnce(): { wall: number; cpu: number } {
  const members = makeCluster();
  const byId = new Map(members.map((m) => [m.id, m]));
  members[0]!.rn.campaign();
  for (let i = 0; i < 100 && pump(members, byId) > 0; i++);
  const leader = members[0]!;
  if (leader.rn.raft.role !== StateRole.Leader) throw new Error("no leader");
  const payloads = Array.from({ length: batch }, () => new Uint8Array(payloadBytes).fill(7));
  // Keep the log bounded: compact behind the applied index every so often.
  let sinceCompact = 0;
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now < deadline) {
    for (let k = 0; k < 10; k++) {
      // Pipelined, with a bounded window of uncommitted batches (as a real proposer would be).
      const st = leader.rn.raft;
      if (st.log.lastIndex() - st.log.committed < window * batch) {
        leader.rn.proposeBatch(payloads);
        sinceCompact += batch;
      }
      pump(members, byId);
    }
    if (sinceCompact > 50_000) {
      for (const m of members) {
        const applied = m.rn.status().applied;
        if (applied > m.storage.firstIndex()) m.storage.compact(applied - 1);
      }
      sinceCompact = 0;
    }
    now = process.hrtime.bigint();
  }
  // Drain what is in flight, then count.
  for (let i = 0; i < 1000 && pump(members, byId) > 0; i++);
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  return { wall: leader.applied / elapsedS, cpu: leader.applied / cpuS };
}

const walls: number[] = [];
const cpus: number[] = [];
runOnce(); // warm-up (JIT)
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
for (let i = 0; i < runs; i++) {
  const r = runOnce();
  walls.push(r.wall);
  cpus.push(r.cpu);
  console.log(`run ${i + 1}: ${fmt(r.wall)} entries/s (${fmt(r.cpu)} per CPU-second)`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `raft-commit: 3 members, batch=${batch}, payload=${payloadBytes}B, window=${window}: ` +
  `median ${fmt(median(walls))} entries/s (${fmt(median(cpus))} per CPU-second) over ${runs} runs`,
);
