/**
 * Member administration's checks before a conf change is proposed: etcd 3.4's strict
 * reconfiguration rules (started members, active peer connections) and the forwarding of a
 * promotion from a follower to the leader.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/pkg/clock.js";
import { ConfChangeType, type ConfChange } from "../../src/raft/types.js";
import { MemberAdmin, HEALTH_INTERVAL_MS, type MemberAdminRaft } from "../../src/server/cluster/member-admin.js";
import { Membership, type MemberRecord } from "../../src/server/cluster/membership.js";
import { ServerError, serverError } from "../../src/server/errors.js";
import type { LeaderClient } from "../../src/server/leader-forward.js";
import type { Proposer } from "../../src/server/proposer.js";
import type { WriteSession } from "../../src/server/store-port.js";

const SELF = 1n;
const session = { stage: () => undefined, stageLatest: () => undefined } as unknown as WriteSession;

function member(id: bigint, started = true, isLearner = false): MemberRecord {
  return { id, name: started ? `m${id}` : "", peerUrls: [`http://127.0.0.1:${2380 + Number(id)}`], clientUrls: [], isLearner };
}

interface Setup {
  members: MemberRecord[];
  /** ID → ms ago the connection became active; absent = down. */
  connectedMsAgo?: Map<bigint, number>;
  isLeader?: boolean;
  strict?: boolean;
  leaderClient?: LeaderClient;
}

function setup(s: Setup): { admin: MemberAdmin; proposed: ConfChange[]; clock: ManualClock } {
  const clock = new ManualClock({ startMs: 1_000_000 });
  const membership = new Membership(7n);
  for (const m of s.members) membership.add({ ...m }, session);
  const proposed: ConfChange[] = [];
  const proposer = {
    proposeConfChange: async (cc: ConfChange) => {
      proposed.push(cc);
      return { value: membership.list() };
    },
  } as unknown as Proposer;
  const isLeader = s.isLeader ?? true;
  const raft: MemberAdminRaft = {
    leader: isLeader ? SELF : 2n,
    isLeader,
    status: () => ({ progress: new Map(s.members.map((m) => [m.id, { match: 100 }])) }) as unknown as ReturnType<MemberAdminRaft["status"]>,
    transferLeader(to) {
      // The transferee takes over at once.
      (this as { leader: bigint }).leader = to;
    },
  };
  const connected = s.connectedMsAgo;
  const admin = new MemberAdmin(
    { memberId: SELF, requestTimeoutMs: 1000, heartbeatMs: 100, strictReconfigCheck: s.strict ?? true },
    {
      raft, proposer, membership, clock, stopped: () => false,
      activity: connected === undefined ? undefined : { activeSince: (id) => (connected.has(id) ? clock.nowMs() - connected.get(id)! : undefined) },
      leaderClient: s.leaderClient,
    },
  );
  return { admin, proposed, clock };
}

const LONG = HEALTH_INTERVAL_MS + 1000;
const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return "ok";
  } catch (err) {
    return (err as ServerError).code;
  }
};

describe("strict reconfiguration: adding a voter", () => {
  it("is allowed with every voter started and connected for the health interval", async () => {
    const { admin, proposed } = setup({ members: [member(1n), member(2n), member(3n)], connectedMsAgo: new Map([[2n, LONG], [3n, LONG]]) });
    expect(await code(admin.add(["http://127.0.0.1:9999"], false))).toBe("ok");
    expect(proposed[0]!.type).toBe(ConfChangeType.AddNode);
  });

  it("is refused when too few voters have started (the new member counts towards the quorum)", async () => {
    const { admin, proposed } = setup({ members: [member(1n), member(2n), member(3n, false)], connectedMsAgo: new Map([[2n, LONG], [3n, LONG]]) });
    expect(await code(admin.add(["http://127.0.0.1:9999"], false))).toBe("NotEnoughStartedMembers");
    expect(proposed).toHaveLength(0);
  });

  it("a lone started member may add a second", async () => {
    const { admin } = setup({ members: [member(1n)], connectedMsAgo: new Map() });
    expect(await code(admin.add(["http://127.0.0.1:9999"], false))).toBe("ok");
  });

  it("is refused as unhealthy while a peer connection is younger than the health interval, or down", async () => {
    const young = setup({ members: [member(1n), member(2n), member(3n)], connectedMsAgo: new Map([[2n, LONG], [3n, 1000]]) });
    expect(await code(young.admin.add(["http://127.0.0.1:9999"], false))).toBe("Unhealthy");
    const down = setup({ members: [member(1n), member(2n), member(3n)], connectedMsAgo: new Map([[2n, LONG]]) });
    expect(await code(down.admin.add(["http://127.0.0.1:9999"], false))).toBe("Unhealthy");
  });

  it("learners and --strict-reconfig-check=false skip the checks", async () => {
    const members = [member(1n), member(2n, false), member(3n, false)];
    expect(await code(setup({ members, connectedMsAgo: new Map() }).admin.add(["http://127.0.0.1:9999"], true))).toBe("ok");
    expect(await code(setup({ members, connectedMsAgo: new Map(), strict: false }).admin.add(["http://127.0.0.1:9999"], false))).toBe("ok");
  });
});

describe("strict reconfiguration: removing a voter", () => {
  it("is allowed when the connected voters left are a quorum", async () => {
    const { admin, proposed } = setup({ members: [member(1n), member(2n), member(3n)], connectedMsAgo: new Map([[2n, LONG], [3n, LONG]]) });
    expect(await code(admin.remove(3n))).toBe("ok");
    expect(proposed[0]).toMatchObject({ type: ConfChangeType.RemoveNode, nodeId: 3n });
  });

  it("a peer this member cannot reach may always go", async () => {
    const { admin } = setup({ members: [member(1n), member(2n), member(3n)], connectedMsAgo: new Map([[2n, LONG]]) });
    expect(await code(admin.remove(3n))).toBe("ok");
  });

  it("is refused as unhealthy when removing a connected peer would leave no active quorum", async () => {
    const { admin } = setup({ members: [member(1n), member(2n), member(3n)], connectedMsAgo: new Map([[2n, LONG]]) });
    expect(await code(admin.remove(2n))).toBe("Unhealthy");
  });

  it("is refused when the started voters left are not a quorum; a learner may always go", async () => {
    const members = [member(1n), member(2n, false), member(3n, false), member(4n, true, true)];
    const { admin } = setup({ members, connectedMsAgo: new Map([[2n, LONG], [3n, LONG], [4n, LONG]]) });
    expect(await code(admin.remove(3n))).toBe("NotEnoughStartedMembers");
    expect(await code(admin.remove(4n))).toBe("ok");
  });
});

describe("promotion", () => {
  it("the leader checks that enough voters have started, counting the learner", async () => {
    const members = [member(1n), member(2n, false), member(3n, false), member(4n, true, true)];
    const { admin } = setup({ members, connectedMsAgo: new Map() });
    expect(await code(admin.promote(4n))).toBe("NotEnoughStartedMembers");
    const ok = setup({ members: [member(1n), member(2n), member(3n, false), member(4n, true, true)], connectedMsAgo: new Map() });
    expect(await code(ok.admin.promote(4n))).toBe("ok");
  });

  it("a follower forwards it to the leader's peer URLs, trying the next URL on a transport error", async () => {
    const asked: string[] = [];
    const leader: MemberRecord = { ...member(2n), peerUrls: ["http://127.0.0.1:1", "http://127.0.0.1:2"] };
    const { admin, proposed } = setup({
      members: [member(1n), leader, member(4n, true, true)],
      isLeader: false,
      leaderClient: {
        leaseRenew: () => Promise.reject(new Error("unused")),
        leaseTimeToLive: () => Promise.reject(new Error("unused")),
        promoteMember: async (url, id) => {
          asked.push(`${url} ${id}`);
          if (url.endsWith(":1")) throw new Error("connection refused");
          return [leader];
        },
      },
    });
    expect(await admin.promote(4n)).toEqual([leader]);
    expect(asked).toEqual(["http://127.0.0.1:1 4", "http://127.0.0.1:2 4"]);
    expect(proposed).toHaveLength(0);
  });

  it("a follower returns the leader's final answer at once", async () => {
    let calls = 0;
    const { admin } = setup({
      members: [member(1n), member(2n), member(4n, true, true)],
      isLeader: false,
      leaderClient: {
        leaseRenew: () => Promise.reject(new Error("unused")),
        leaseTimeToLive: () => Promise.reject(new Error("unused")),
        promoteMember: async () => {
          calls++;
          throw serverError("LearnerNotReady");
        },
      },
    });
    expect(await code(admin.promote(4n))).toBe("LearnerNotReady");
    expect(calls).toBe(1);
  });

  it("a follower without a leader client answers NotLeader", async () => {
    const { admin } = setup({ members: [member(1n), member(2n)], isLeader: false });
    expect(await code(admin.promote(4n))).toBe("NotLeader");
  });
});

describe("leadership transfer before a graceful stop", () => {
  it("hands leadership to the voter connected the longest, never a learner", async () => {
    const members = [member(1n), member(2n), member(3n), member(4n, true, true)];
    const { admin } = setup({ members, connectedMsAgo: new Map([[2n, LONG], [3n, LONG + 5000], [4n, LONG + 60_000]]) });
    expect(await admin.transferLeadership()).toBe(3n);
  });

  it("a follower or a lone voter has nothing to hand over; no connected voter is unhealthy", async () => {
    expect(await setup({ members: [member(1n), member(2n)], isLeader: false, connectedMsAgo: new Map([[2n, LONG]]) }).admin.transferLeadership()).toBeUndefined();
    expect(await setup({ members: [member(1n), member(4n, true, true)], connectedMsAgo: new Map([[4n, LONG]]) }).admin.transferLeadership()).toBeUndefined();
    expect(await code(setup({ members: [member(1n), member(2n)], connectedMsAgo: new Map() }).admin.transferLeadership())).toBe("Unhealthy");
  });
});
