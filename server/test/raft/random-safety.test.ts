/**
 * Randomized safety test of the Raft core (paper §5.2 election safety, §5.3 log matching,
 * §5.4.3 leader completeness and state machine safety) under message loss, duplication,
 * reordering, partitions, log compaction and snapshots. Every run replays from its seed:
 *
 *   SEED=123 RUNS=1 npx vitest run server/test/raft/random-safety.test.ts
 *
 * A failure prints `seed=N`.
 */
import { describe, it, expect } from "vitest";
import { ErrProposalDropped, MessageType, StateRole, seededRng, type Message, type Rng } from "../../src/raft/index.js";
import { Network, enc } from "./network.js";

const dec = new TextDecoder();

interface Outcome {
  leadersByTerm: Map<number, bigint>;
  committed: number;
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`safety violation: ${what}`);
}

type Knobs = { commitPreviousTermByCounting?: boolean; grantVoteWithoutLogCheck?: boolean; skipCheckQuorum?: boolean };

function runSeed(seed: number, steps: number, knobs?: Knobs): Outcome {
  const rng: Rng = seededRng(seed);
  const pick = <T>(xs: T[]): T => xs[rng.nextInt(xs.length)]!;
  const n = pick([3, 5]);
  const net = new Network(n, {
    seed,
    preVote: rng.nextInt(2) === 0,
    checkQuorum: rng.nextInt(2) === 0,
    maxInflightMsgs: pick([1, 4, 256]),
    maxSizePerMsgBytes: pick([64, 1 << 20]),
    ...(knobs ? { unsafeTestingKnobs: knobs } : {}),
  });
  const ids = [...net.members.keys()];
  const leadersByTerm = new Map<number, bigint>();
  /** index -> "term/data" of every entry any member applied: must never disagree. */
  const applied = new Map<number, string>();
  let proposals = 0;

  // Observe applies through a wrapper around processReady.
  const processReady = (id: bigint) => {
    const m = net.get(id);
    if (!m.rn.hasReady()) return;
    // Peek at what is going to be applied, then let the network's driver do the work.
    const before = m.applied.length;
    const rd = m.rn.ready();
    if (rd.hardState) m.storage.setHardState(rd.hardState);
    if (rd.snapshot) m.storage.applySnapshot(rd.snapshot);
    m.storage.append(rd.entries);
    for (const msg of rd.messages) net.pool.push(msg);
    for (const e of rd.committedEntries) {
      const key = `${e.term}/${dec.decode(e.data)}/${e.type}`;
      const prev = applied.get(e.index);
      check(prev === undefined || prev === key, `state machine safety: index ${e.index} applied as ${prev} and ${key} (member ${id})`);
      applied.set(e.index, key);
      if (e.type === 1) {
        // no conf changes in this test
      } else if (e.data.byteLength > 0) {
        m.applied.push(e.data);
      }
    }
    void before;
    m.rn.advance(rd);
  };

  const cut = new Set<string>();
  const checkLeaders = () => {
    for (const id of ids) {
      const r = net.raft(id);
      if (r.role !== StateRole.Leader) continue;
      const prev = leadersByTerm.get(r.term);
      check(prev === undefined || prev === id, `election safety: term ${r.term} has leaders ${prev} and ${id}`);
      if (prev === undefined) {
        leadersByTerm.set(r.term, id);
        // Leader completeness: the new leader holds every entry applied anywhere.
        for (const [index, key] of applied) {
          if (index < r.log.firstIndex()) continue;
          check(index <= r.log.lastIndex(), `leader completeness: leader ${id} of term ${r.term} lacks index ${index}`);
          const t = r.log.term(index);
          check(key.startsWith(`${t}/`), `leader completeness: leader ${id} has term ${t} at ${index}, applied ${key}`);
        }
      }
    }
  };
  const checkLogMatching = () => {
    for (let a = 0; a < ids.length; a++) {
      for (let b = a + 1; b < ids.length; b++) {
        const la = net.raft(ids[a]!).log;
        const lb = net.raft(ids[b]!).log;
        const lo = Math.max(la.firstIndex(), lb.firstIndex());
        const hi = Math.min(la.lastIndex(), lb.lastIndex());
        // Find the highest index where both have the same term: everything before it must match.
        let match = -1;
        for (let i = hi; i >= lo; i--) {
          if (la.term(i) === lb.term(i)) {
            match = i;
            break;
          }
        }
        for (let i = lo; i <= match; i++) {
          check(la.term(i) === lb.term(i), `log matching: members ${ids[a]} and ${ids[b]} agree at ${match} but differ at ${i}`);
        }
      }
    }
  };

  for (let step = 0; step < steps; step++) {
    const action = rng.nextInt(100);
    if (action < 35) {
      net.get(pick(ids)).rn.tick();
    } else if (action < 50) {
      try {
        net.get(pick(ids)).rn.propose(enc.encode(`p${proposals++}`));
      } catch (e) {
        if (!(e instanceof ErrProposalDropped)) throw e;
      }
    } else if (action < 75) {
      processReady(pick(ids));
    } else if (action < 92) {
      // Deliver a random message (possibly duplicated, possibly lost), out of order.
      if (net.pool.length > 0) {
        const i = rng.nextInt(net.pool.length);
        const msg = net.pool[i]!;
        const fate = rng.nextInt(20);
        if (fate !== 0) net.pool.splice(i, 1); // 1 in 20: keep it for a duplicate delivery later
        const lost = fate === 1 || cut.has(`${msg.from}-${msg.to}`);
        if (!lost) {
          const copy: Message = { ...msg, entries: msg.entries.slice() };
          net.get(msg.to).rn.step(copy);
        }
        // Like a real transport, report the outcome of every snapshot it was asked to send.
        if (msg.type === MessageType.Snap && fate !== 0) net.get(msg.from).rn.reportSnapshot(msg.to, !lost);
      }
    } else if (action < 95) {
      // Partition a random member away, or heal.
      if (rng.nextInt(2) === 0) {
        const x = pick(ids);
        for (const y of ids) if (y !== x) { cut.add(`${x}-${y}`); cut.add(`${y}-${x}`); }
      } else {
        cut.clear();
      }
    } else if (action < 97) {
      // Compact a member's log behind its applied index.
      const m = net.get(pick(ids));
      const st = m.rn.status();
      if (st.applied > m.storage.firstIndex() + 2) {
        const at = st.applied - 1;
        m.storage.createSnapshot(at, st.confState, new Uint8Array(0));
        m.storage.compact(at);
      }
    } else {
      // Snapshot transfer report (sometimes failing), unreachable reports.
      const m = net.get(pick(ids));
      const other = pick(ids);
      if (other !== m.id) {
        if (rng.nextInt(2) === 0) m.rn.reportSnapshot(other, rng.nextInt(3) !== 0);
        else m.rn.reportUnreachable(other);
      }
    }
    // Bound the pool (a real transport has bounded queues too).
    if (net.pool.length > 2000) {
      for (const msg of net.pool.splice(0, net.pool.length - 2000)) {
        if (msg.type === MessageType.Snap) net.get(msg.from).rn.reportSnapshot(msg.to, false);
      }
    }
    checkLeaders();
    if (step % 50 === 0) checkLogMatching();
  }
  checkLogMatching();

  // Liveness once the network is good again: heal, deliver everything, and a proposal commits.
  cut.clear();
  let done = false;
  const marker = `final-${seed}`;
  let proposed = false;
  for (let round = 0; round < 3000 && !done; round++) {
    for (const id of ids) net.get(id).rn.tick();
    for (let k = 0; k < 20; k++) {
      for (const id of ids) processReady(id);
      const msgs = net.pool;
      net.pool = [];
      for (const msg of msgs) {
        net.get(msg.to).rn.step(msg);
        if (msg.type === MessageType.Snap) net.get(msg.from).rn.reportSnapshot(msg.to, true);
      }
      checkLeaders();
    }
    const leader = ids.find((id) => net.raft(id).role === StateRole.Leader);
    if (leader !== undefined && !proposed) {
      try {
        net.get(leader).rn.propose(enc.encode(marker));
        proposed = true;
      } catch (e) {
        if (!(e instanceof ErrProposalDropped)) throw e;
      }
    }
    done = ids.every((id) => net.get(id).applied.some((d) => dec.decode(d) === marker));
    if (!done && round % 100 === 99) proposed = false; // the proposal may have been lost with a leader change
  }
  if (!done && process.env["DEBUG_RAFT"]) {
    for (const id of ids) {
      const st = net.get(id).rn.status();
      const r = net.raft(id);
      console.error(id, StateRole[st.softState.role], "term", st.hardState.term, "lead", st.softState.lead, "commit", st.hardState.commit, "applied", st.applied, "last", st.lastIndex, "first", r.log.firstIndex(), "snapFirst", net.get(id).storage.firstIndex(), st.progress ? [...st.progress].map(([k, v]) => `${k}:${v.state}/${v.match}/${v.next}`).join(" ") : "", "pendingConf", r.pendingConfIndex, "lt", r.leadTransferee, "unc", r.uncommittedSizeBytes);
    }
  }
  check(done, "liveness: the final proposal did not commit on every member after healing");
  checkLogMatching();
  return { leadersByTerm, committed: applied.size };
}

describe("randomized safety (§5.2, §5.3, §5.4): seeded runs", () => {
  const seed0 = process.env["SEED"] !== undefined ? Number(process.env["SEED"]) : 1;
  const runs = process.env["RUNS"] !== undefined ? Number(process.env["RUNS"]) : 60;
  it(`seeds ${seed0}..${seed0 + runs - 1}`, () => {
    let committed = 0;
    for (let s = seed0; s < seed0 + runs; s++) {
      try {
        committed += runSeed(s, 3000).committed;
      } catch (e) {
        console.error(`seed=${s}`);
        throw e;
      }
    }
    expect(committed).toBeGreaterThan(0);
  });
});

describe("the safety checkers can fail", () => {
  function firstViolation(knobs: Knobs, maxSeeds: number): number | undefined {
    for (let s = 1; s <= maxSeeds; s++) {
      try {
        runSeed(s, 3000, knobs);
      } catch (e) {
        if (e instanceof Error && e.message.startsWith("safety violation")) return s;
        throw e;
      }
    }
    return undefined;
  }

  it("votes granted without the log check (§5.4.1) are caught", () => {
    expect(firstViolation({ grantVoteWithoutLogCheck: true }, 100)).toBeDefined();
  });
  // commitPreviousTermByCounting is exercised by the Figure 8 unit test: the empty entry a new
  // leader appends makes the random schedule here reach it too rarely to be a useful check.
});
