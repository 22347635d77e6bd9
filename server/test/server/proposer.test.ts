/**
 * Proposals while no leader is known are held, as etcd's raft node holds them: sent once a leader
 * is known, failed with Go's "context deadline exceeded" if still held at their deadline; a
 * proposal raft refuses while a leader is known fails at once with "raft proposal dropped".
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/pkg/clock.js";
import { ErrProposalDropped } from "../../src/raft/raft.js";
import { Proposer, raftRequest } from "../../src/server/proposer.js";
import { ServerError } from "../../src/server/errors.js";

/** A raft core stand-in: a leader or none, proposals recorded, or refused while transferring. */
function sink() {
  const s = {
    leader: false,
    transferring: false,
    sent: [] as number[],
    knowsLeader: () => s.leader,
    propose(data: Uint8Array) {
      if (!s.leader || s.transferring) throw new ErrProposalDropped("raft proposal dropped");
      s.sent.push(data.length);
    },
    proposeConfChange() {
      if (!s.leader) throw new ErrProposalDropped("raft proposal dropped");
      s.sent.push(-1);
    },
  };
  return s;
}

function setup() {
  const clock = new ManualClock();
  const raft = sink();
  const proposer = new Proposer({ memberId: 1n, maxRequestBytes: 1 << 20, requestTimeoutMs: 5000 }, { raft, clock });
  proposer.start();
  /** A put whose encoding is `n` bytes longer per step of `size`, so sends are told apart. */
  const put = (size: number) => proposer.propose(raftRequest({ put: { key: Buffer.alloc(size, 1), value: Buffer.alloc(0), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } }));
  const outcome = (p: Promise<unknown>) => {
    const o: { error?: ServerError; value?: unknown } = {};
    p.then((v) => (o.value = v), (e: ServerError) => (o.error = e));
    return o;
  };
  return { clock, raft, proposer, put, outcome };
}

const flush = () => new Promise((r) => setImmediate(r));

describe("Proposer without a leader", () => {
  it("holds proposals and sends them, oldest first, once a leader is known", async () => {
    const { raft, proposer, put, outcome } = setup();
    const a = outcome(put(1));
    const b = outcome(put(2));
    await flush();
    expect(raft.sent).toEqual([]);
    expect(a.error).toBeUndefined();
    raft.leader = true;
    proposer.leaderFound();
    expect(raft.sent.length).toBe(2);
    expect(raft.sent[0]).toBeLessThan(raft.sent[1]!);
    await flush();
    expect(a.error).toBeUndefined();
    expect(b.error).toBeUndefined();
  });

  it("fails a proposal still held at its deadline with etcd's context error, never having sent it", async () => {
    const { clock, raft, put, outcome } = setup();
    const a = outcome(put(1));
    clock.advance(4900);
    await flush();
    expect(a.error).toBeUndefined();
    clock.advance(200);
    await flush();
    expect(a.error).toBeInstanceOf(ServerError);
    expect(a.error?.code).toBe("ContextDeadline");
    expect(raft.sent).toEqual([]);
  });

  it("holds again what raft refuses because the leader went meanwhile, keeping the order", async () => {
    const { clock, raft, proposer, put, outcome } = setup();
    const first = outcome(put(1));
    clock.advance(1000);
    const second = outcome(put(2));
    // A leader is reported, but the core has lost it again by the time the proposals go.
    raft.leader = true;
    raft.leader = false;
    proposer.leaderFound();
    expect(raft.sent).toEqual([]);
    clock.advance(4100); // past the first one's deadline only
    await flush();
    expect(first.error?.code).toBe("ContextDeadline");
    expect(second.error).toBeUndefined();
    raft.leader = true;
    proposer.leaderFound();
    expect(raft.sent.length).toBe(1);
  });

  it("answers 'raft proposal dropped' at once when raft refuses with a leader known", async () => {
    const { raft, put, outcome } = setup();
    raft.leader = true;
    raft.transferring = true;
    const a = outcome(put(1));
    await flush();
    expect(a.error?.code).toBe("ProposalDropped");
  });

  it("holds conf changes too", async () => {
    const { raft, proposer, outcome } = setup();
    const cc = outcome(proposer.proposeConfChange({ type: 0, nodeId: 2n, context: new Uint8Array(0) } as never));
    await flush();
    expect(raft.sent).toEqual([]);
    raft.leader = true;
    proposer.leaderFound();
    expect(raft.sent).toEqual([-1]);
    expect(cc.error).toBeUndefined();
  });
});
