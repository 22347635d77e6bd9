/**
 * Unit tests for the Raft core, named after the sections of the Raft paper (Ongaro & Ousterhout,
 * 2014) and of Ongaro's thesis (for pre-vote, check-quorum, learners, leader transfer, ReadIndex).
 */
import { describe, it, expect } from "vitest";
import {
  ConfChangeType, EntryType, ErrProposalDropped, MessageType, MemoryStorage, NONE, RawNode, StateRole,
  emptyMessage, seededRng, RaftInvariantError, type Message,
} from "../../src/raft/index.js";
import { Network, defaultConfig, enc } from "./network.js";

function msg(type: MessageType, from: bigint, to: bigint, fields: Partial<Message> = {}): Message {
  return { ...emptyMessage(type, to, from), ...fields };
}

describe("§5.2 Leader election", () => {
  it("a follower starts an election after a randomized timeout in [electionTicks, 2*electionTicks)", () => {
    const seen = new Set<number>();
    for (let seed = 0; seed < 200; seed++) {
      const net = new Network(3, { seed });
      const m = net.get(1);
      let ticks = 0;
      while (m.rn.raft.role === StateRole.Follower && ticks < 100) {
        m.rn.tick();
        ticks++;
      }
      expect(m.rn.raft.role).toBe(StateRole.Candidate);
      expect(ticks).toBeGreaterThanOrEqual(10);
      expect(ticks).toBeLessThan(20);
      seen.add(ticks);
    }
    // The timeouts really are spread out (that is what breaks split votes).
    expect(seen.size).toBeGreaterThan(5);
  });

  it("a candidate votes for itself, bumps its term and wins with a majority", () => {
    const net = new Network(3);
    net.elect(1);
    expect(net.raft(1).role).toBe(StateRole.Leader);
    expect(net.raft(1).term).toBe(2);
    expect(net.raft(1).vote).toBe(1n);
    expect(net.raft(2).lead).toBe(1n);
    expect(net.raft(3).lead).toBe(1n);
  });

  it("election safety: a member grants at most one vote per term", () => {
    const net = new Network(3);
    const r3 = net.raft(3);
    r3.step(msg(MessageType.Vote, 1n, 3n, { term: 2, logTerm: 1, index: 1 }));
    r3.step(msg(MessageType.Vote, 2n, 3n, { term: 2, logTerm: 1, index: 1 }));
    const resps = r3.msgs.filter((m) => m.type === MessageType.VoteResp);
    expect(resps.map((m) => [m.to, m.reject])).toEqual([[1n, false], [2n, true]]);
    // Repeating the request of the candidate we voted for is granted again (idempotent).
    r3.step(msg(MessageType.Vote, 1n, 3n, { term: 2, logTerm: 1, index: 1 }));
    expect(r3.msgs.at(-1)!.reject).toBe(false);
  });

  it("a candidate that loses steps back to follower; a split vote leads to a new, higher term", () => {
    const net = new Network(4);
    // 1 and 2 campaign at the same time; 3 votes 1, 4 votes 2: nobody has 3 of 4.
    net.get(1).rn.campaign();
    net.get(2).rn.campaign();
    net.processReady(net.get(1));
    net.processReady(net.get(2));
    net.pool = net.pool.filter((m) => !((m.from === 1n && m.to === 4n) || (m.from === 2n && m.to === 3n)));
    net.stabilize();
    expect(net.leaders()).toEqual([]);
    // Someone times out again and wins a later term.
    for (let i = 0; i < 40 && net.leaders().length === 0; i++) {
      net.tickAll();
      net.stabilize();
    }
    expect(net.leaders().length).toBe(1);
    expect(net.raft(net.leaders()[0]!).term).toBeGreaterThan(2);
  });

  it("a candidate that hears from a leader of its term becomes a follower", () => {
    const net = new Network(3);
    net.get(2).rn.campaign();
    const r2 = net.raft(2);
    expect(r2.role).toBe(StateRole.Candidate);
    r2.step(msg(MessageType.App, 1n, 2n, { term: r2.term, logTerm: 1, index: 1 }));
    expect(r2.role).toBe(StateRole.Follower);
    expect(r2.lead).toBe(1n);
  });

  it("a leader steps down when it sees a higher term", () => {
    const net = new Network(3);
    net.elect(1);
    net.raft(1).step(msg(MessageType.Heartbeat, 2n, 1n, { term: 5 }));
    expect(net.raft(1).role).toBe(StateRole.Follower);
    expect(net.raft(1).term).toBe(5);
  });

  it("learners never campaign (thesis §4.2.1)", () => {
    const net = new Network(3, { learners: [3n] });
    const m = net.get(3);
    for (let i = 0; i < 100; i++) m.rn.tick();
    m.rn.campaign();
    expect(m.rn.raft.role).toBe(StateRole.Follower);
    expect(m.rn.raft.term).toBe(1);
  });
});

describe("§5.3 Log replication", () => {
  it("the leader replicates and commits an entry once a majority stored it", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    for (const id of [1, 2, 3]) expect(net.appliedStrings(id)).toEqual(["x"]);
    expect(net.raft(1).log.committed).toBe(3);
  });

  it("an entry on only a minority is not committed", () => {
    const net = new Network(5);
    net.elect(1);
    net.isolate(3);
    net.isolate(4);
    net.cutLink(1n, 5n);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    expect(net.raft(1).log.committed).toBe(2);
    expect(net.appliedStrings(1)).toEqual([]);
  });

  it("log matching: a follower deletes conflicting entries and appends the leader's", () => {
    const storage = new MemoryStorage();
    storage.applySnapshot({ metadata: { index: 1, term: 1, confState: { voters: [1n, 2n], learners: [] } }, data: new Uint8Array(0) });
    storage.append([
      { term: 2, index: 2, type: EntryType.Normal, data: enc.encode("a") },
      { term: 2, index: 3, type: EntryType.Normal, data: enc.encode("stale") },
    ]);
    storage.setHardState({ term: 2, vote: NONE, commit: 2 });
    const rn = new RawNode(defaultConfig(2n), { storage, rng: seededRng(1) });
    rn.step(msg(MessageType.App, 1n, 2n, {
      term: 3, logTerm: 2, index: 2, commit: 2,
      entries: [{ term: 3, index: 3, type: EntryType.Normal, data: enc.encode("new") }],
    }));
    const log = rn.raft.log;
    expect(log.lastIndex()).toBe(3);
    expect(log.term(3)).toBe(3);
    const resp = rn.raft.msgs.at(-1)!;
    expect(resp.type).toBe(MessageType.AppResp);
    expect(resp.reject).toBe(false);
    expect(resp.index).toBe(3);
  });

  it("a follower rejects an append whose previous entry does not match, with a back-off hint", () => {
    const net = new Network(2);
    const r2 = net.raft(2);
    r2.step(msg(MessageType.App, 1n, 2n, { term: 2, logTerm: 2, index: 5 }));
    const resp = r2.msgs.at(-1)!;
    expect(resp.reject).toBe(true);
    expect(resp.index).toBe(5);
    expect(resp.rejectHint).toBe(1); // our log ends at 1
    expect(resp.logTerm).toBe(1);
  });

  it("findConflictByTerm skips a whole term of mismatching entries", () => {
    const net = new Network(1);
    const log = net.raft(1).log;
    log.append([2, 2, 2, 3, 3].map((t, i) => ({ term: t, index: i + 2, type: EntryType.Normal, data: new Uint8Array(0) })));
    expect(log.findConflictByTerm(6, 2)).toBe(4);
    expect(log.findConflictByTerm(6, 1)).toBe(1);
    expect(log.findConflictByTerm(6, 5)).toBe(6);
    expect(log.findConflictByTerm(0, 0)).toBe(0);
  });

  it("a leader appends an empty entry of its term on election", () => {
    const net = new Network(3);
    net.elect(1);
    const log = net.raft(1).log;
    const last = log.allEntriesFrom(log.lastIndex())[0]!;
    expect(last.term).toBe(net.raft(1).term);
    expect(last.data.byteLength).toBe(0);
  });

  it("followers forward proposals to the leader unless forwarding is disabled", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(2).rn.propose(enc.encode("via-2"));
    net.stabilize();
    expect(net.appliedStrings(1)).toEqual(["via-2"]);
    const net2 = new Network(3, { disableProposalForwarding: true });
    net2.elect(1);
    expect(() => net2.get(2).rn.propose(enc.encode("x"))).toThrow(ErrProposalDropped);
  });

  it("proposals without a known leader are dropped", () => {
    const net = new Network(3);
    expect(() => net.get(1).rn.propose(enc.encode("x"))).toThrow(ErrProposalDropped);
  });

  it("the leader drops proposals beyond the uncommitted-bytes limit", () => {
    const net = new Network(3, { maxUncommittedEntriesBytes: 100 });
    net.elect(1);
    net.isolate(1);
    const rn = net.get(1).rn;
    rn.propose(new Uint8Array(60));
    expect(() => rn.propose(new Uint8Array(60))).toThrow(ErrProposalDropped);
    net.heal();
    net.stabilize();
    // Once committed, the budget is free again.
    rn.propose(new Uint8Array(60));
  });
});

describe("§5.4.1 Election restriction (leader completeness)", () => {
  it("a voter rejects a candidate whose last term is older", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    const r3 = net.raft(3);
    r3.step(msg(MessageType.Vote, 2n, 3n, { term: 10, logTerm: 1, index: 100 }));
    expect(r3.msgs.at(-1)!.reject).toBe(true);
  });

  it("a voter rejects a candidate with the same last term and a shorter log", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    const r3 = net.raft(3);
    const last = r3.log.lastIndex();
    r3.step(msg(MessageType.Vote, 2n, 3n, { term: 10, logTerm: r3.log.lastTerm(), index: last - 1 }));
    expect(r3.msgs.at(-1)!.reject).toBe(true);
    r3.step(msg(MessageType.Vote, 2n, 3n, { term: 11, logTerm: r3.log.lastTerm(), index: last }));
    expect(r3.msgs.at(-1)!.reject).toBe(false);
  });

  it("every committed entry survives leader changes (leader completeness)", () => {
    const net = new Network(5);
    net.elect(1);
    net.get(1).rn.propose(enc.encode("committed"));
    net.stabilize();
    net.isolate(1);
    net.isolate(2);
    net.elect(3);
    expect(net.raft(3).role).toBe(StateRole.Leader);
    const ents = net.raft(3).log.allEntriesFrom(2).map((e) => new TextDecoder().decode(e.data));
    expect(ents).toContain("committed");
  });

  it("the unsafe knob grantVoteWithoutLogCheck really breaks the restriction", () => {
    const net = new Network(3, { unsafeTestingKnobs: { grantVoteWithoutLogCheck: true } });
    net.elect(1);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    const r3 = net.raft(3);
    r3.step(msg(MessageType.Vote, 2n, 3n, { term: 10, logTerm: 1, index: 1 }));
    expect(r3.msgs.at(-1)!.reject).toBe(false);
  });
});

describe("§5.4.2 Committing entries from previous terms (Figure 8)", () => {
  /**
   * Figure 8 (c): member 1 led term 2 and put "a" (term 2, index 3) on itself and member 2; 5 led
   * term 3 without reaching anyone. Now 1 is leader of term 4 and "a" reaches member 3: it is on a
   * majority of 5, but an entry of an older term must not be committed by counting replicas; if it
   * were, 5 could still be elected (its last term 3 beats 2) and overwrite it, as in Figure 8 (d).
   */
  function leaderOfTerm4(knob: boolean) {
    const storage = new MemoryStorage();
    const voters = [1n, 2n, 3n, 4n, 5n];
    storage.applySnapshot({ metadata: { index: 1, term: 1, confState: { voters, learners: [] } }, data: new Uint8Array(0) });
    storage.append([
      { term: 2, index: 2, type: EntryType.Normal, data: new Uint8Array(0) },
      { term: 2, index: 3, type: EntryType.Normal, data: enc.encode("a") },
    ]);
    storage.setHardState({ term: 3, vote: NONE, commit: 2 });
    const rn = new RawNode(defaultConfig(1n, { unsafeTestingKnobs: { commitPreviousTermByCounting: knob } }), { storage, rng: seededRng(7) });
    rn.campaign();
    const r = rn.raft;
    expect(r.term).toBe(4);
    r.step(msg(MessageType.VoteResp, 2n, 1n, { term: 4 }));
    r.step(msg(MessageType.VoteResp, 3n, 1n, { term: 4 }));
    expect(r.role).toBe(StateRole.Leader);
    expect(r.log.lastIndex()).toBe(4); // the empty entry of term 4
    // The driver persists it; from now on the leader counts its own copy.
    const rd = rn.ready();
    storage.append(rd.entries);
    rn.advance(rd);
    // Members 2 and 3 acknowledge index 3 ("a"), not yet the term-4 entry.
    r.step(msg(MessageType.AppResp, 2n, 1n, { term: 4, index: 3 }));
    r.step(msg(MessageType.AppResp, 3n, 1n, { term: 4, index: 3 }));
    return r;
  }

  it("a leader does not commit an old-term entry even when it is on a majority", () => {
    const r = leaderOfTerm4(false);
    expect(r.prs.committed()).toBe(3); // a majority holds index 3 ...
    expect(r.log.committed).toBe(2); // ... but it is not committed
  });

  it("with commitPreviousTermByCounting (unsafe knob) it would be committed", () => {
    const r = leaderOfTerm4(true);
    expect(r.log.committed).toBe(3);
  });

  it("the old entry is committed implicitly with the first entry of the leader's term", () => {
    const r = leaderOfTerm4(false);
    r.step(msg(MessageType.AppResp, 2n, 1n, { term: 4, index: 4 }));
    expect(r.log.committed).toBe(2);
    r.step(msg(MessageType.AppResp, 3n, 1n, { term: 4, index: 4 }));
    expect(r.log.committed).toBe(4);
  });
});

describe("Thesis §9.6 Pre-vote", () => {
  it("a pre-candidate does not bump its term, and a partitioned member's term stays put", () => {
    const net = new Network(3, { preVote: true });
    net.elect(1);
    const term = net.raft(1).term;
    net.isolate(3);
    for (let i = 0; i < 100; i++) {
      net.get(3).rn.tick();
      net.stabilize();
    }
    expect(net.raft(3).term).toBe(term);
    expect(net.raft(3).role).toBe(StateRole.PreCandidate);
    net.heal();
    net.tickAll(1);
    net.stabilize();
    expect(net.raft(1).role).toBe(StateRole.Leader);
    expect(net.raft(1).term).toBe(term);
    expect(net.raft(3).lead).toBe(1n);
  });

  it("without pre-vote, the same partition disrupts the leader when it heals", () => {
    const net = new Network(3, { preVote: false });
    net.elect(1);
    const term = net.raft(1).term;
    net.isolate(3);
    for (let i = 0; i < 100; i++) {
      net.get(3).rn.tick();
      net.stabilize();
    }
    expect(net.raft(3).term).toBeGreaterThan(term);
    net.heal();
    net.get(3).rn.campaign();
    net.stabilize();
    expect(net.raft(1).term).toBeGreaterThan(term);
  });

  it("a pre-vote is granted for a higher term without changing the voter's term or vote", () => {
    const net = new Network(3, { preVote: true });
    const r2 = net.raft(2);
    r2.step(msg(MessageType.PreVote, 1n, 2n, { term: 2, logTerm: 1, index: 1 }));
    const resp = r2.msgs.at(-1)!;
    expect(resp.type).toBe(MessageType.PreVoteResp);
    expect(resp.reject).toBe(false);
    expect(resp.term).toBe(2);
    expect(r2.term).toBe(1);
    expect(r2.vote).toBe(NONE);
  });
});

describe("Thesis §6.2 Check-quorum", () => {
  it("a leader that does not hear from a quorum for an election timeout steps down", () => {
    const net = new Network(3, { checkQuorum: true });
    net.elect(1);
    net.isolate(1);
    for (let i = 0; i < 20; i++) {
      net.get(1).rn.tick();
      net.stabilize();
    }
    expect(net.raft(1).role).toBe(StateRole.Follower);
  });

  it("with the skipCheckQuorum knob it stays leader forever", () => {
    const net = new Network(3, { checkQuorum: true, unsafeTestingKnobs: { skipCheckQuorum: true } });
    net.elect(1);
    net.isolate(1);
    for (let i = 0; i < 50; i++) {
      net.get(1).rn.tick();
      net.stabilize();
    }
    expect(net.raft(1).role).toBe(StateRole.Leader);
  });

  it("a healthy leader stays leader, and followers inside its lease ignore vote requests", () => {
    const net = new Network(3, { checkQuorum: true });
    net.elect(1);
    for (let i = 0; i < 50; i++) {
      net.get(1).rn.tick();
      net.stabilize();
    }
    expect(net.raft(1).role).toBe(StateRole.Leader);
    const r2 = net.raft(2);
    const before = r2.msgs.length;
    r2.step(msg(MessageType.Vote, 3n, 2n, { term: 99, logTerm: 99, index: 99 }));
    expect(r2.term).toBeLessThan(99);
    expect(r2.msgs.length).toBe(before);
  });

  it("a leader-transfer vote request overrides the lease", () => {
    const net = new Network(3, { checkQuorum: true });
    net.elect(1);
    const r2 = net.raft(2);
    r2.step(msg(MessageType.Vote, 3n, 2n, { term: 99, logTerm: 99, index: 99, context: enc.encode("CampaignTransfer") }));
    expect(r2.term).toBe(99);
  });
});

describe("Thesis §4.2.1 Learners", () => {
  it("learners receive the log but their votes and acks do not count", () => {
    const net = new Network(3, { learners: [2n, 3n] });
    net.elect(1);
    expect(net.raft(1).role).toBe(StateRole.Leader);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    expect(net.appliedStrings(3)).toEqual(["x"]);
    // A candidate cannot win with learners' votes alone.
    const net2 = new Network(3, { learners: [3n] });
    net2.get(1).rn.campaign();
    const r1 = net2.raft(1);
    r1.step(msg(MessageType.VoteResp, 3n, 1n, { term: r1.term }));
    expect(r1.role).toBe(StateRole.Candidate);
    r1.step(msg(MessageType.VoteResp, 2n, 1n, { term: r1.term }));
    expect(r1.role).toBe(StateRole.Leader);
  });

  it("a learner answers vote requests: it may have been promoted without knowing yet", () => {
    // 1 was promoted by a change committed on {2, 3} that 1 has not received; then 2 failed.
    // 3 needs 1's vote to be elected, and 1 still believes it is a learner. If learners refused
    // to answer, nobody could ever be elected.
    const mk = (id: bigint, voters: bigint[], learners: bigint[], extra: number) => {
      const storage = new MemoryStorage();
      storage.applySnapshot({ metadata: { index: 1, term: 1, confState: { voters, learners } }, data: new Uint8Array(0) });
      storage.append(Array.from({ length: extra }, (_, i) => ({ term: 1, index: 2 + i, type: EntryType.Normal, data: new Uint8Array(0) })));
      storage.setHardState({ term: 1, vote: NONE, commit: 1 });
      return new RawNode(defaultConfig(id), { storage, rng: seededRng(Number(id)) });
    };
    const learner = mk(1n, [2n, 3n], [1n], 0);
    const candidate = mk(3n, [1n, 2n, 3n], [], 1);
    candidate.campaign();
    const req = candidate.raft.msgs.find((m) => m.type === MessageType.Vote && m.to === 1n)!;
    learner.step(req);
    const resp = learner.raft.msgs.find((m) => m.type === MessageType.VoteResp)!;
    expect(resp.reject).toBe(false);
    candidate.step(resp);
    expect(candidate.raft.role).toBe(StateRole.Leader);
    // The learner itself still never campaigns.
    learner.campaign();
    expect(learner.raft.role).toBe(StateRole.Follower);
  });

  it("leadership is never transferred to a learner", () => {
    const net = new Network(3, { learners: [3n] });
    net.elect(1);
    net.get(1).rn.transferLeader(3n);
    expect(net.raft(1).leadTransferee).toBe(NONE);
  });
});

describe("Thesis §4.1 Membership changes (one at a time)", () => {
  it("only one change may be pending; a second one is refused until the first is applied", () => {
    const net = new Network(3);
    net.elect(1);
    const rn = net.get(1).rn;
    rn.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4n, context: new Uint8Array(0) });
    expect(() => rn.proposeConfChange({ type: ConfChangeType.AddNode, nodeId: 5n, context: new Uint8Array(0) })).toThrow(ErrProposalDropped);
    net.stabilize();
    expect(rn.status().confState.learners).toEqual([4n]);
    rn.proposeConfChange({ type: ConfChangeType.AddNode, nodeId: 4n, context: new Uint8Array(0) });
    net.stabilize();
    expect(rn.status().confState).toEqual({ voters: [1n, 2n, 3n, 4n], learners: [] });
  });

  it("a voter can be demoted to a learner (AddLearnerNode on a voter)", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(1).rn.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 3n, context: new Uint8Array(0) });
    net.stabilize();
    expect(net.get(1).rn.status().confState).toEqual({ voters: [1n, 2n], learners: [3n] });
    expect(net.get(3).rn.status().confState).toEqual({ voters: [1n, 2n], learners: [3n] });
    net.get(3).rn.campaign();
    expect(net.raft(3).role).toBe(StateRole.Follower);
  });

  it("a new leader treats unapplied entries as possibly pending conf changes", () => {
    const net = new Network(3);
    net.elect(1);
    const r1 = net.raft(1);
    expect(r1.pendingConfIndex).toBe(r1.log.lastIndex() - 1);
  });

  it("removing a voter shrinks the quorum and can commit pending entries", () => {
    const net = new Network(3);
    net.elect(1);
    net.isolate(3);
    net.get(1).rn.proposeConfChange({ type: ConfChangeType.RemoveNode, nodeId: 3n, context: new Uint8Array(0) });
    net.stabilize();
    expect(net.raft(1).prs.voters.size).toBe(2);
    net.isolate(2);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    expect(net.raft(1).log.committed).toBeLessThan(net.raft(1).log.lastIndex());
    net.heal();
    net.isolate(3);
    net.stabilize();
    net.tickAll(1);
    net.stabilize();
    expect(net.appliedStrings(1)).toEqual(["x"]);
  });

  it("a removed leader steps down and a removed member cannot campaign", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(1).rn.proposeConfChange({ type: ConfChangeType.RemoveNode, nodeId: 1n, context: new Uint8Array(0) });
    net.stabilize();
    expect(net.raft(1).role).toBe(StateRole.Follower);
    net.get(1).rn.campaign();
    expect(net.raft(1).role).toBe(StateRole.Follower);
    net.elect(2);
    expect(net.raft(2).role).toBe(StateRole.Leader);
    net.get(2).rn.propose(enc.encode("after"));
    net.stabilize();
    expect(net.appliedStrings(3)).toEqual(["after"]);
  });

  it("a member refuses to campaign while it has unapplied conf changes", () => {
    const storage = new MemoryStorage();
    const rn = new RawNode(defaultConfig(1n), { storage, rng: seededRng(1) });
    rn.bootstrap([1n, 2n]);
    rn.campaign();
    expect(rn.raft.role).toBe(StateRole.Follower);
  });

  it("bootstrap writes one AddNode entry per peer at term 1, committed", () => {
    const storage = new MemoryStorage();
    const rn = new RawNode(defaultConfig(1n), { storage, rng: seededRng(1) });
    rn.bootstrap([1n, 2n, 3n]);
    const rd = rn.ready();
    expect(rd.entries.map((e) => [e.term, e.index, e.type])).toEqual([[1, 1, 1], [1, 2, 1], [1, 3, 1]]);
    expect(rd.committedEntries.length).toBe(3);
    expect(rd.hardState).toEqual({ term: 1, vote: 0n, commit: 3 });
    expect(rd.mustSync).toBe(true);
    // etcd's bytes for ConfChange{ID:0, Type:AddNode, NodeID:1}.
    expect([...rd.entries[0]!.data]).toEqual([0x08, 0x00, 0x10, 0x00, 0x18, 0x01]);
  });
});

describe("Thesis §3.10 Leadership transfer", () => {
  it("an up-to-date transferee gets TimeoutNow and becomes leader", () => {
    const net = new Network(3, { preVote: true, checkQuorum: true });
    net.elect(1);
    net.get(1).rn.transferLeader(2n);
    net.stabilize();
    expect(net.raft(2).role).toBe(StateRole.Leader);
    expect(net.raft(1).role).toBe(StateRole.Follower);
  });

  it("a lagging transferee is caught up first", () => {
    const net = new Network(3);
    net.elect(1);
    net.isolate(3);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    net.heal();
    net.get(1).rn.transferLeader(3n);
    expect(net.raft(1).leadTransferee).toBe(3n);
    expect(() => net.get(1).rn.propose(enc.encode("y"))).toThrow(ErrProposalDropped);
    net.stabilize();
    expect(net.raft(3).role).toBe(StateRole.Leader);
    expect(net.appliedStrings(3)).toEqual(["x"]);
  });

  it("a transfer is abandoned after an election timeout", () => {
    const net = new Network(3);
    net.elect(1);
    net.isolate(3);
    net.get(1).rn.transferLeader(3n);
    net.stabilize();
    for (let i = 0; i < 10; i++) net.get(1).rn.tick();
    expect(net.raft(1).leadTransferee).toBe(NONE);
    expect(net.raft(1).role).toBe(StateRole.Leader);
    net.get(1).rn.propose(enc.encode("ok"));
  });

  it("a transfer request on a follower is forwarded to the leader", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(2).rn.transferLeader(2n);
    net.stabilize();
    expect(net.raft(2).role).toBe(StateRole.Leader);
  });
});

describe("Thesis §6.4 ReadIndex", () => {
  it("safe reads are answered after a heartbeat round confirms leadership", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(1).rn.readIndex(enc.encode("r1"));
    expect(net.get(1).readStates).toEqual([]);
    net.stabilize();
    expect(net.get(1).readStates).toEqual([{ index: net.raft(1).log.committed, ctx: "r1" }]);
  });

  it("reads that arrive during a round share the next round (batching)", () => {
    const net = new Network(3);
    net.elect(1);
    const rn = net.get(1).rn;
    let heartbeats = 0;
    net.filter = (m) => {
      if (m.type === MessageType.Heartbeat && m.context.byteLength > 0) heartbeats++;
      return true;
    };
    for (let i = 0; i < 50; i++) rn.readIndex(enc.encode(`r${i}`));
    net.stabilize();
    expect(net.get(1).readStates.length).toBe(50);
    // One round for r0, one shared round for r1..r49: two heartbeats to each of two followers.
    expect(heartbeats).toBe(4);
  });

  it("a new leader answers only after committing an entry of its term", () => {
    const net = new Network(3);
    net.elect(1);
    net.filter = (m) => !(m.type === MessageType.AppResp);
    net.elect(2);
    expect(net.raft(2).role).toBe(StateRole.Leader);
    net.get(2).rn.readIndex(enc.encode("r"));
    net.stabilize();
    expect(net.get(2).readStates).toEqual([]);
    net.filter = () => true;
    net.tickAll(1);
    net.stabilize();
    expect(net.get(2).readStates.map((r) => r.ctx)).toEqual(["r"]);
    expect(net.get(2).readStates[0]!.index).toBe(net.raft(2).log.committed);
  });

  it("a single member answers at once", () => {
    const net = new Network(1);
    net.elect(1);
    net.get(1).rn.readIndex(enc.encode("now"));
    net.processReady(net.get(1));
    expect(net.get(1).readStates.map((r) => r.ctx)).toEqual(["now"]);
  });

  it("reads on a follower are forwarded and answered with the leader's index", () => {
    const net = new Network(3);
    net.elect(1);
    net.get(3).rn.readIndex(enc.encode("f"));
    net.stabilize();
    expect(net.get(3).readStates).toEqual([{ index: net.raft(1).log.committed, ctx: "f" }]);
  });

  it("the read context travels as etcd's raft carries it: the data of the request's one entry", () => {
    // etcd 3.4's leader reads MsgReadIndex's context from Entries[0].Data (and panics on none);
    // its followers take MsgReadIndexResp's the same way.
    const net = new Network(3);
    net.elect(1);
    const seen: Message[] = [];
    net.filter = (m) => {
      if (m.type === MessageType.ReadIndex || m.type === MessageType.ReadIndexResp) seen.push(m);
      return true;
    };
    net.get(3).rn.readIndex(enc.encode("wire"));
    net.stabilize();
    expect(seen.map((m) => [MessageType[m.type], m.entries.length, new TextDecoder().decode(m.entries[0]!.data), m.context.byteLength]))
      .toEqual([["ReadIndex", 1, "wire", 0], ["ReadIndexResp", 1, "wire", 0]]);
    expect(net.get(3).readStates.map((r) => r.ctx)).toEqual(["wire"]);
  });

  it("a leader serves requests in etcd's form from distinct followers by their entry data", () => {
    const net = new Network(3);
    net.elect(1);
    const req = (from: bigint, ctx: string) =>
      msg(MessageType.ReadIndex, from, 1n, { entries: [{ term: 0, index: 0, type: EntryType.Normal, data: enc.encode(ctx) }] });
    net.get(1).rn.step(req(2n, "a"));
    net.get(1).rn.step(req(3n, "b"));
    const answers: string[] = [];
    net.filter = (m) => {
      if (m.type === MessageType.ReadIndexResp) answers.push(`${m.to}:${new TextDecoder().decode(m.entries[0]!.data)}`);
      return true;
    };
    net.stabilize();
    expect(answers.sort()).toEqual(["2:a", "3:b"]);
  });

  it("a partitioned leader never answers", () => {
    const net = new Network(3);
    net.elect(1);
    net.isolate(1);
    net.get(1).rn.readIndex(enc.encode("lost"));
    for (let i = 0; i < 5; i++) {
      net.get(1).rn.tick();
      net.stabilize();
    }
    expect(net.get(1).readStates).toEqual([]);
  });

  it("lease-based reads are answered without a round", () => {
    const net = new Network(3, { checkQuorum: true, readOnlyOption: "lease-based" });
    net.elect(1);
    net.get(1).rn.readIndex(enc.encode("lease"));
    net.processReady(net.get(1));
    expect(net.get(1).readStates.map((r) => r.ctx)).toEqual(["lease"]);
  });
});

describe("§7 Log compaction and snapshots", () => {
  function laggingFollowerScenario() {
    const net = new Network(3);
    net.elect(1);
    net.isolate(3);
    for (let i = 0; i < 5; i++) net.get(1).rn.propose(enc.encode(`e${i}`));
    net.stabilize();
    const leader = net.get(1);
    const applied = leader.rn.status().applied;
    leader.storage.createSnapshot(applied, leader.rn.status().confState, enc.encode("image"));
    leader.storage.compact(applied);
    net.heal();
    return { net, applied };
  }

  it("the leader sends a snapshot to a follower that needs compacted entries, which restores it", () => {
    const { net, applied } = laggingFollowerScenario();
    let snaps = 0;
    net.filter = (m) => {
      if (m.type === MessageType.Snap) snaps++;
      return true;
    };
    net.get(1).rn.propose(enc.encode("after"));
    net.stabilize();
    net.tickAll(1);
    net.stabilize();
    expect(snaps).toBe(1);
    const f = net.get(3);
    expect(f.storage.snapshot().metadata.index).toBe(applied);
    expect(f.rn.status().applied).toBeGreaterThanOrEqual(applied);
    expect(net.appliedStrings(3)).toEqual(["after"]);
    expect(net.raft(1).prs.progress.get(3n)!.state).toBe("replicate");
  });

  it("a failed snapshot (reportSnapshot false) makes the leader probe and retry", () => {
    const { net } = laggingFollowerScenario();
    net.filter = (m) => m.type !== MessageType.Snap;
    net.get(1).rn.propose(enc.encode("after"));
    net.stabilize();
    const pr = net.raft(1).prs.progress.get(3n)!;
    expect(pr.state).toBe("snapshot");
    net.get(1).rn.reportSnapshot(3n, false);
    expect(pr.state).toBe("probe");
    net.filter = () => true;
    net.tickAll(1);
    net.stabilize();
    expect(net.appliedStrings(3)).toEqual(["after"]);
  });

  it("a follower ignores a snapshot older than its commit index", () => {
    const net = new Network(2);
    net.elect(1);
    net.get(1).rn.propose(enc.encode("x"));
    net.stabilize();
    const r2 = net.raft(2);
    const committed = r2.log.committed;
    r2.step(msg(MessageType.Snap, 1n, 2n, {
      term: r2.term,
      snapshot: { metadata: { index: committed - 1, term: 1, confState: { voters: [1n, 2n], learners: [] } }, data: new Uint8Array(0) },
    }));
    expect(r2.log.committed).toBe(committed);
    expect(r2.msgs.at(-1)!.index).toBe(committed);
  });

  it("a snapshot that does not include the receiver is ignored", () => {
    const net = new Network(2);
    const r2 = net.raft(2);
    r2.step(msg(MessageType.Snap, 1n, 2n, {
      term: 1,
      snapshot: { metadata: { index: 10, term: 1, confState: { voters: [1n], learners: [] } }, data: new Uint8Array(0) },
    }));
    expect(r2.log.committed).toBe(1);
  });
});

describe("Flow control", () => {
  it("a replicating follower has at most maxInflightMsgs unacknowledged appends", () => {
    const net = new Network(2, { maxInflightMsgs: 3 });
    net.elect(1);
    const r1 = net.raft(1);
    net.isolate(2);
    for (let i = 0; i < 10; i++) net.get(1).rn.propose(enc.encode(`e${i}`));
    const apps = r1.msgs.filter((m) => m.type === MessageType.App && m.to === 2n);
    expect(apps.length).toBe(3);
    expect(r1.prs.progress.get(2n)!.inflights.full()).toBe(true);
  });

  it("appends respect maxSizePerMsgBytes but always carry at least one entry", () => {
    const net = new Network(2, { maxSizePerMsgBytes: 100, maxInflightMsgs: 100 });
    net.elect(1);
    const r1 = net.raft(1);
    r1.msgs = [];
    net.get(1).rn.propose(new Uint8Array(500));
    for (let i = 0; i < 4; i++) net.get(1).rn.propose(new Uint8Array(30));
    const apps = r1.msgs.filter((m) => m.type === MessageType.App && m.to === 2n);
    for (const m of apps) expect(m.entries.length).toBeGreaterThan(0);
    expect(apps.every((m) => m.entries.length === 1 || m.entries.reduce((s, e) => s + e.data.byteLength + 12, 0) <= 100)).toBe(true);
  });

  it("a probing follower gets one append per round trip", () => {
    const net = new Network(2);
    net.elect(1);
    const r1 = net.raft(1);
    net.get(1).rn.reportUnreachable(2n);
    expect(r1.prs.progress.get(2n)!.state).toBe("probe");
    r1.msgs = [];
    for (let i = 0; i < 5; i++) net.get(1).rn.propose(enc.encode(`e${i}`));
    expect(r1.msgs.filter((m) => m.type === MessageType.App && m.to === 2n).length).toBe(1);
    net.stabilize();
    expect(r1.prs.progress.get(2n)!.state).toBe("replicate");
    expect(net.appliedStrings(2).length).toBe(5);
  });
});

describe("Ready / advance contract", () => {
  it("a leader counts its own entries only after they are persisted (thesis §10.2.1)", () => {
    const net = new Network(3);
    net.elect(1);
    const rn = net.get(1).rn;
    const r1 = net.raft(1);
    rn.propose(enc.encode("x"));
    const rd = rn.ready(); // entries handed out, not yet durable
    // Both followers acknowledge before the leader's own write is done.
    const index = rd.entries[0]!.index;
    for (const from of [2n, 3n]) rn.step({ ...msg(MessageType.AppResp, from, 1n), term: r1.term, index });
    expect(r1.log.committed).toBe(index); // a quorum of followers suffices
    const net2 = new Network(3);
    net2.elect(1);
    const rn2 = net2.get(1).rn;
    const r2 = net2.raft(1);
    rn2.propose(enc.encode("x"));
    const rd2 = rn2.ready();
    const i2 = rd2.entries[0]!.index;
    rn2.step({ ...msg(MessageType.AppResp, 2n, 1n), term: r2.term, index: i2 });
    expect(r2.log.committed).toBe(i2 - 1); // one follower + an unpersisted leader copy: no
    net2.get(1).storage.append(rd2.entries);
    rn2.advance(rd2);
    expect(r2.log.committed).toBe(i2); // now the leader's copy counts
  });

  it("mustSync is set when term, vote or entries change, not for commit-only changes", () => {
    const net = new Network(3);
    net.get(1).rn.campaign();
    const rd = net.get(1).rn.ready();
    expect(rd.mustSync).toBe(true); // term and vote
    net.get(1).rn.advance(rd);
    net.elect(1);
    const f = net.get(2).rn;
    f.step(msg(MessageType.Heartbeat, 1n, 2n, { term: net.raft(1).term, commit: net.raft(1).log.committed }));
    const rd2 = f.ready();
    expect(rd2.mustSync).toBe(false);
  });

  it("ready() may be called again before advance() and returns only new things", () => {
    const net = new Network(1);
    net.elect(1);
    const rn = net.get(1).rn;
    rn.propose(enc.encode("a"));
    const rd1 = rn.ready();
    rn.propose(enc.encode("b"));
    const rd2 = rn.ready();
    expect(rd1.entries.map((e) => e.index)).toEqual([3]);
    expect(rd2.entries.map((e) => e.index)).toEqual([4]);
    expect(rn.hasReady()).toBe(false);
    const st = net.get(1).storage;
    st.append(rd1.entries);
    rn.advance(rd1);
    st.append(rd2.entries);
    rn.advance(rd2);
    // The leader counted its own copies when they were reported durable: both commit now.
    const rd3 = rn.ready();
    expect(rd3.committedEntries.map((e) => e.index)).toEqual([3, 4]);
    rn.advance(rd3);
    expect(rn.status().applied).toBe(4);
  });

  it("committed entries are paged across Readies by maxCommittedSizePerReadyBytes", () => {
    const net = new Network(1, { maxCommittedSizePerReadyBytes: 110 });
    net.elect(1);
    const rn = net.get(1).rn;
    for (let i = 0; i < 10; i++) rn.propose(new Uint8Array(40));
    const sizes: number[] = [];
    for (let k = 0; k < 20 && rn.hasReady(); k++) {
      const rd = rn.ready();
      net.get(1).storage.append(rd.entries);
      if (rd.committedEntries.length > 0) sizes.push(rd.committedEntries.length);
      rn.advance(rd);
    }
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(10);
    expect(Math.max(...sizes)).toBe(2); // each entry counts 52 bytes: two fit in 110
    expect(rn.status().applied).toBe(rn.status().hardState.commit);
  });

  it("local message types are rejected by step()", () => {
    const net = new Network(1);
    expect(() => net.get(1).rn.step(msg(MessageType.Hup, 1n, 1n))).toThrow();
  });

  it("broken invariants crash", () => {
    const net = new Network(1);
    expect(() => net.raft(1).log.appliedTo(50)).toThrow(RaftInvariantError);
    expect(() => net.raft(1).log.commitTo(50)).toThrow(RaftInvariantError);
  });
});
