/**
 * The Ready loop (RaftNode) on the in-memory WAL and snapshot directory: a single member
 * bootstraps, commits proposals, snapshots, loses power, and restarts from what its memory disk
 * kept, the way a member restarts from its data dir.
 */
import { describe, expect, it } from "vitest";
import { MemoryStorage } from "../../src/raft/storage.js";
import { RawNode } from "../../src/raft/raw-node.js";
import { seededRng } from "../../src/raft/rng.js";
import { decodeConfChange } from "../../src/raft/conf-change-codec.js";
import { EntryType, type ConfState } from "../../src/raft/types.js";
import { RaftNode, type LogPersistence, type SnapshotPersistence } from "../../src/server/raft-node.js";
import { MemoryWalDir } from "../../src/wal/index.js";
import { MemorySnapDir, MemorySnapshotter } from "../../src/snap/index.js";
import { createLogger } from "../../src/pkg/logger.js";
import { systemClock } from "../../src/pkg/clock.js";
import { SeededRandom, testSeed } from "../../../test/harness/seeded-random.js";

const logger = createLogger({ level: "error" });

interface Member {
  raft: RaftNode;
  /** Proposals applied so far, the snapshot's included. */
  applied: string[];
  /** Raft index of the last entry applied. */
  appliedIndex: number;
  confState: () => ConfState;
}

async function startMember(walDir: MemoryWalDir, snapDir: MemorySnapDir): Promise<Member> {
  const storage = new MemoryStorage();
  const snapshotter = new MemorySnapshotter({ dir: snapDir });
  let applied: string[] = [];
  let appliedIndex = 0;
  let confState: ConfState = { voters: [], learners: [] };
  let wal;
  const fresh = !walDir.exists();
  if (fresh) {
    wal = await walDir.create(new TextEncoder().encode("member 1"));
  } else {
    const markers = await walDir.validSnapshotEntries();
    const snapshot = markers.some((m) => m.index > 0) ? await snapshotter.loadNewestAvailable(markers) : undefined;
    const opened = await walDir.open(snapshot ? { index: snapshot.metadata.index, term: snapshot.metadata.term } : { index: 0, term: 0 });
    wal = opened.wal;
    if (snapshot) {
      storage.applySnapshot(snapshot);
      applied = JSON.parse(new TextDecoder().decode(snapshot.data)) as string[];
      appliedIndex = snapshot.metadata.index;
      confState = snapshot.metadata.confState;
    }
    storage.setHardState(opened.hardState);
    storage.append(opened.entries);
  }
  // The driver's view of the WAL and snapshots is exactly their contracts.
  const log: LogPersistence = wal;
  const snaps: SnapshotPersistence = snapshotter;
  const rawNode = new RawNode(
    {
      id: 1n,
      electionTicks: 10,
      heartbeatTicks: 1,
      applied: appliedIndex,
      maxSizePerMsgBytes: 1 << 20,
      maxInflightMsgs: 256,
      maxUncommittedEntriesBytes: 1 << 30,
      preVote: false,
      checkQuorum: false,
    },
    { storage, rng: seededRng(1) },
  );
  if (fresh) rawNode.bootstrap([1n]);
  const member: Member = { raft: undefined as unknown as RaftNode, applied, appliedIndex, confState: () => confState };
  member.raft = new RaftNode(
    { tickMs: 1, unsafeNoFsync: false },
    {
      rawNode,
      storage,
      wal: log,
      snapshotter: snaps,
      transport: { send: () => undefined, sendSnapshot: () => undefined },
      clock: systemClock,
      fatal: (message, fields) => {
        throw new Error(`${message} ${JSON.stringify(fields)}`);
      },
      logger,
    },
  );
  member.raft.start({
    apply: async (batch) => {
      for (const e of batch.entries) {
        if (e.type === EntryType.ConfChange) confState = member.raft.applyConfChange(decodeConfChange(e.data));
        else if (e.data.length > 0) member.applied.push(new TextDecoder().decode(e.data));
        member.appliedIndex = e.index;
      }
    },
    onReadStates: () => undefined,
    onSoftState: () => undefined,
    afterAdvance: () => undefined,
    sendSnapshot: () => undefined,
  });
  member.raft.campaign();
  return member;
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("RaftNode on the in-memory WAL and snapshots", () => {
  it("restarts after a power loss with every committed proposal (SEED=)", async () => {
    const seed = testSeed();
    try {
      const r = new SeededRandom(seed);
      const walDir = new MemoryWalDir({ segmentSizeBytes: 4096 });
      const snapDir = new MemorySnapDir();
      const proposed: string[] = [];
      for (let life = 0; life < 3; life++) {
        const m = await startMember(walDir, snapDir);
        // The snapshot it restarts from holds a prefix of what was proposed.
        expect(m.applied).toEqual(proposed.slice(0, m.applied.length));
        if (life > 0) expect(m.applied.length).toBeGreaterThan(0);
        await until("leadership", () => m.raft.isLeader);
        for (let i = 0; i < 40; i++) {
          const p = `life${life}-p${i}`;
          proposed.push(p);
          m.raft.propose(new TextEncoder().encode(p));
          if (i % 8 === 7) await until("apply", () => m.applied.length === proposed.length);
        }
        await until("apply", () => m.applied.length === proposed.length);
        await m.raft.applied();
        await m.raft.snapshot(m.appliedIndex, m.confState(), new TextEncoder().encode(JSON.stringify(m.applied)), 5);
        await m.raft.purgeSnapshots(2);
        for (let i = 0; i < 5; i++) m.raft.propose(new TextEncoder().encode(`life${life}-tail${i}`));
        proposed.push(...Array.from({ length: 5 }, (_, i) => `life${life}-tail${i}`));
        await until("apply", () => m.applied.length === proposed.length);
        await m.raft.stop();
        walDir.crash((n) => r.int(0, n - 1));
        snapDir.crash();
      }
      const last = await startMember(walDir, snapDir);
      await until("leadership", () => last.raft.isLeader);
      await until("replay", () => last.applied.length === proposed.length);
      expect(last.applied).toEqual(proposed);
      await last.raft.stop();
    } catch (e) {
      console.error(`RaftNode memory I/O test failed with SEED=${seed}`);
      throw e;
    }
  });
});
