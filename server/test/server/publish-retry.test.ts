/**
 * A member's publish (the v2 PUT of its attributes) is retried until it commits, as etcd 3.4's
 * publish loop does: raft never resends a lost proposal, and a stable leader gives no second
 * trigger. Three bootstrapped members on an in-memory network that loses the first proposal one
 * member sends; that member still becomes ready.
 */
import { afterEach, expect, it } from "vitest";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { MessageType, type NodeId } from "../../src/raft/types.js";
import { bootstrapMember, type Member } from "../../src/server/bootstrap.js";
import type { PeerTransport } from "../../src/server/raft-node.js";
import { MemoryWalDir } from "../../src/wal/memory-wal.js";
import { MemorySnapDir, MemorySnapshotter } from "../../src/snap/memory-snapshotter.js";
import { ManualClock, tempDir } from "../mvcc/helpers.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it("a member whose first publish proposal is lost publishes on a retry", async () => {
  const clock = new ManualClock();
  const members = new Map<NodeId, Member>();
  const lostFrom = new Set<NodeId>();
  let lost = 0;
  const transport: PeerTransport = {
    send: (messages) => {
      for (const m of messages) {
        // Lose the first proposal each member forwards to the leader (its publish).
        if (m.type === MessageType.Prop && !lostFrom.has(m.from)) {
          lostFrom.add(m.from);
          lost++;
          continue;
        }
        setImmediate(() => {
          try {
            members.get(m.to)?.server.process(m);
          } catch {
            /* a stopped member */
          }
        });
      }
    },
    sendSnapshot: () => undefined,
  };
  const names = ["one", "two", "three"];
  const initialCluster = new Map(names.map((n) => [n, [`http://${n}:2380`]]));
  for (const [i, name] of names.entries()) {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const member = await bootstrapMember(
      {
        name, clientUrls: [`http://${name}:2379`], maxRequestBytes: 1 << 20, maxTxnOps: 128,
        electionMs: 100, heartbeatMs: 10, quotaBackendBytes: 0, requestTimeoutMs: 500,
        snapshotCount: 10_000, snapshotCatchUpEntries: 5, maxSnapshots: 0,
        initialCluster, initialClusterToken: "publish-retry", preVote: true, enableLeaseCheckpoint: false,
        unsafeNoFsync: false, autoCompactionMode: "periodic", autoCompactionRetention: "0",
      },
      {
        wal: new MemoryWalDir(), snapshotter: new MemorySnapshotter({ dir: new MemorySnapDir() }), backend: await Backend.open(t.dir),
        transport, clock, fatal: (message) => {
          throw new Error(`${name}: ${message}`);
        },
        randomSeed: 11 + i, logger: nullLogger,
      },
    );
    members.set(member.server.memberId, member);
    cleanups.push(() => member.stop());
  }
  let ready = 0;
  for (const m of members.values()) {
    m.start();
    void m.server.ready.then(() => ready++);
  }
  for (let i = 0; ready < 3; i++) {
    if (i > 20_000) throw new Error(`only ${ready} of 3 members published (${lost} proposals lost)`);
    clock.advance(5);
    await new Promise((r) => setTimeout(r, 0));
  }
  expect(lost).toBeGreaterThan(0);
  for (const m of members.values()) {
    expect(m.server.membership.list().map((x) => x.name).sort()).toEqual(["one", "three", "two"]);
  }
});
