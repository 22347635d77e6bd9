/**
 * The corruption checks' decisions, as etcd 3.4 makes them: which peer answers count as a
 * mismatch at start-up, and which raise the CORRUPT alarm in the leader's periodic check.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/pkg/clock.js";
import { createLogger } from "../../src/pkg/logger.js";
import { CorruptionChecker, PeerHashRefusedError, answerPeerHashKV, type PeerHash } from "../../src/server/corrupt-check.js";
import type { MemberRecord } from "../../src/server/cluster/membership.js";
import { ErrCompacted, ErrFutureRev } from "../../src/mvcc/errors.js";

const members: MemberRecord[] = [1n, 2n, 3n].map((id) => ({ id, name: `m${id}`, peerUrls: [`http://127.0.0.1:${2380 + Number(id)}`], clientUrls: [], isLearner: false }));

function checker(local: PeerHash[], peers: Map<string, PeerHash | Error>, opts: { intervalMs?: number } = {}) {
  const raised: number[] = [];
  let i = 0;
  const clock = new ManualClock();
  const c = new CorruptionChecker(
    { memberId: 1n, checkIntervalMs: opts.intervalMs ?? 0, requestTimeoutMs: 1000 },
    {
      hashKV: async () => local[Math.min(i++, local.length - 1)]!,
      members: () => members,
      isLeader: () => true,
      linearizableReadNotify: async () => undefined,
      raiseCorrupt: async () => void raised.push(1),
      client: {
        hashKV: async (url) => {
          const a = peers.get(url);
          if (a === undefined || a instanceof Error) throw a ?? new Error("connection refused");
          return a;
        },
      },
      clock,
      logger: createLogger({ level: "error" }),
    },
  );
  return { c, raised, clock };
}

const h = (revision: number, hash: number, compactRevision = 0): PeerHash => ({ revision, hash, compactRevision });
const url = (id: number): string => `http://127.0.0.1:${2380 + id}`;

describe("initial corruption check", () => {
  it("passes when every reachable peer agrees, or cannot hash at our revision", async () => {
    const { c } = checker([h(10, 7)], new Map<string, PeerHash | Error>([[url(2), h(10, 7)], [url(3), new PeerHashRefusedError("FutureRevision", "behind")]]));
    await expect(c.initialCheck()).resolves.toBeUndefined();
  });

  it("fails on another hash at the same compact revision, not at another compact revision", async () => {
    const bad = checker([h(10, 7, 2)], new Map([[url(2), h(10, 8, 2)], [url(3), h(10, 7, 2)]]));
    await expect(bad.c.initialCheck()).rejects.toThrow("1 found data inconsistency with peers");
    const compactedElsewhere = checker([h(10, 7, 2)], new Map([[url(2), h(10, 8, 5)], [url(3), h(10, 7, 2)]]));
    await expect(compactedElsewhere.c.initialCheck()).resolves.toBeUndefined();
  });
});

describe("periodic corruption check on the leader", () => {
  it("raises nothing when the followers agree or cannot answer", async () => {
    const { c, raised } = checker([h(10, 7), h(10, 7)], new Map<string, PeerHash | Error>([[url(2), h(10, 7)], [url(3), new Error("connection refused")]]));
    expect(await c.check()).toBe(false);
    expect(raised).toHaveLength(0);
  });

  it("raises CORRUPT when a follower is ahead, compacted further, or hashes differently", async () => {
    for (const answer of [h(11, 7), h(10, 7, 3), h(10, 9)]) {
      const { c, raised } = checker([h(10, 7), h(10, 7)], new Map([[url(2), answer], [url(3), h(10, 7)]]));
      expect(await c.check()).toBe(true);
      expect(raised).toHaveLength(1);
    }
    const ok = checker([h(10, 7), h(10, 7)], new Map([[url(2), h(10, 7)], [url(3), h(10, 7)]]));
    expect(await ok.c.check()).toBe(false);
  });

  it("raises CORRUPT when its own hash changes at the same revision", async () => {
    const { c } = checker([h(10, 7), h(10, 8)], new Map([[url(2), h(10, 7)], [url(3), h(10, 7)]]));
    expect(await c.check()).toBe(true);
  });

  it("runs every interval while leader", async () => {
    const { c, raised, clock } = checker([h(10, 7), h(10, 8)], new Map([[url(2), h(10, 7)], [url(3), h(10, 7)]]), { intervalMs: 1000 });
    c.start();
    clock.advance(1000);
    for (let i = 0; i < 20; i++) await Promise.resolve();
    expect(raised.length).toBeGreaterThan(0);
    c.stop();
  });
});

describe("a peer's HashKV answer", () => {
  it("words compaction and future revisions as etcd does", async () => {
    expect(await answerPeerHashKV(async () => { throw new ErrCompacted(5); }, 3)).toEqual({ status: 400, text: "mvcc: required revision has been compacted" });
    expect(await answerPeerHashKV(async () => { throw new ErrFutureRev(5); }, 9)).toEqual({ status: 400, text: "mvcc: required revision is a future revision" });
    expect(await answerPeerHashKV(async () => h(5, 1), 5)).toEqual({ status: 200, hash: h(5, 1) });
  });
});
