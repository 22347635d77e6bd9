/**
 * A merged snapshot end to end, in one process: three bootstrapped members on real backends talk
 * through an in-memory transport that calls their PeerHandler (process, receiveSnapshot,
 * reportSnapshot). One member is cut off while the others write past a snapshot and compact
 * their logs; once it is back, the leader's driver hands MsgSnap to the member, which sends it
 * merged with its backend image; the lagging member keeps the image, raft restores the snapshot,
 * and the apply path installs it: all three end with the same store, leases, members and alarms.
 *
 * The WAL and snapshot directories are the in-memory ones (nothing here restarts a member); time is
 * a manual clock moved by the test, raft's randomness is seeded.
 */
import { afterEach, expect, it } from "vitest";
import { AlarmRequest_AlarmAction, AlarmType } from "@etcd-ts/proto/etcdserverpb/rpc";
import { Backend, type BackendImage } from "../../src/mvcc/backend/backend.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { MessageType, type Message, type NodeId } from "../../src/raft/types.js";
import { bootstrapMember, type Member } from "../../src/server/bootstrap.js";
import { MemoryWalDir } from "../../src/wal/memory-wal.js";
import { MemorySnapDir, MemorySnapshotter } from "../../src/snap/memory-snapshotter.js";
import type { PeerTransport } from "../../src/server/raft-node.js";
import type { MergedSnapshot } from "../../src/server/transport-port.js";
import { ManualClock, tempDir } from "../mvcc/helpers.js";

const b = (x: string): Buffer => Buffer.from(x);

/** Delivers between members asynchronously; `isolated` members neither send nor receive. */
class MemoryNetwork {
  readonly members = new Map<NodeId, Member>();
  readonly isolated = new Set<NodeId>();
  snapshotsDelivered = 0;
  readonly refusals: string[] = [];

  endpoint(): PeerTransport {
    return {
      send: (messages) => {
        for (const m of messages) setImmediate(() => this.deliver(m));
      },
      sendSnapshot: (merged) => void this.deliverSnapshot(merged),
    };
  }

  private cut(m: Message): boolean {
    return this.isolated.has(m.from) || this.isolated.has(m.to);
  }

  private deliver(m: Message): void {
    const to = this.members.get(m.to);
    if (to === undefined || this.cut(m)) return;
    try {
      to.server.process(m);
    } catch (err) {
      this.refusals.push(String(err));
    }
  }

  /** As a snapshot sender does: read the whole image, hand it over, report how it went. */
  private async deliverSnapshot(merged: MergedSnapshot): Promise<void> {
    const { message } = merged;
    let ok = false;
    try {
      const entries: [Buffer, Buffer][] = [];
      for await (const e of merged.image) entries.push(e);
      const to = this.members.get(message.to);
      if (to !== undefined && !this.cut(message)) {
        const image: BackendImage = (async function* () {
          yield* entries;
        })();
        to.server.receiveSnapshot({ message, image });
        this.snapshotsDelivered++;
        ok = true;
      }
    } catch (err) {
      this.refusals.push(String(err));
    }
    this.members.get(message.from)?.server.reportSnapshot(message.to, ok);
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(clock: ManualClock, cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 20_000) throw new Error(`timed out waiting for ${what}`);
    clock.advance(5);
    await new Promise((r) => setTimeout(r, 0));
  }
}

async function settle<T>(clock: ManualClock, p: Promise<T>, what: string): Promise<T> {
  let done = false;
  const out = p.finally(() => (done = true));
  out.catch(() => undefined);
  await until(clock, () => done, what);
  return out;
}

it("a member far behind catches up through the leader's merged snapshot", async () => {
  const clock = new ManualClock();
  const network = new MemoryNetwork();
  const names = ["one", "two", "three"];
  const initialCluster = new Map(names.map((n) => [n, [`http://${n}:2380`]]));
  const members: Member[] = [];
  for (const [i, name] of names.entries()) {
    const t = await tempDir();
    cleanups.push(t.cleanup);
    const member = await bootstrapMember(
      {
        name, clientUrls: [`http://${name}:2379`], maxRequestBytes: 1 << 20, maxTxnOps: 128,
        electionMs: 100, heartbeatMs: 10, quotaBackendBytes: 0, requestTimeoutMs: 60_000,
        snapshotCount: 20, snapshotCatchUpEntries: 5, maxSnapshots: 0,
        initialCluster, initialClusterToken: "snap-test", preVote: true, enableLeaseCheckpoint: false,
        unsafeNoFsync: false, autoCompactionMode: "periodic", autoCompactionRetention: "0",
      },
      {
        wal: new MemoryWalDir(), snapshotter: new MemorySnapshotter({ dir: new MemorySnapDir() }), backend: await Backend.open(t.dir),
        transport: network.endpoint(), clock, fatal: (message, fields) => {
          throw new Error(`${name}: ${message} ${JSON.stringify(fields)}`);
        },
        randomSeed: 7 + i, logger: nullLogger,
      },
    );
    network.members.set(member.server.memberId, member);
    members.push(member);
    cleanups.push(() => member.stop());
  }
  for (const m of members) m.start();
  const leaderOf = (): Member | undefined => members.find((m) => m.server.isLeader);
  await until(clock, () => leaderOf() !== undefined && members.every((m) => m.server.applied >= 3), "a leader with every member published");

  const leader = leaderOf()!;
  const lagging = members.find((m) => m !== leader)!;
  network.isolated.add(lagging.server.memberId);
  const lease = await settle(clock, leader.server.leaseGrant(600, 0n), "lease grant");
  for (let i = 0; i < 60; i++) {
    await settle(clock, leader.server.put({ key: b(`k${i % 7}`), value: b(`v${i}`), lease: i % 2 === 0 ? lease.ID : 0n, prevKv: false, ignoreValue: false, ignoreLease: false }), "put");
  }
  await settle(clock, leader.server.deleteRange({ key: b("k3"), rangeEnd: Buffer.alloc(0), prevKv: false }), "delete");
  await settle(clock, leader.server.compact({ revision: 30n, physical: true }), "compaction");
  await settle(clock, leader.server.alarm({ action: AlarmRequest_AlarmAction.ACTIVATE, memberID: leader.server.memberId, alarm: AlarmType.NOSPACE }), "alarm");
  const behind = lagging.server.applied;
  expect(leader.server.applied - behind).toBeGreaterThan(25); // past a snapshot and its catch-up entries

  network.isolated.clear();
  await until(clock, () => members.every((m) => m.server.applied === leader.server.applied), "the lagging member caught up");
  expect(network.snapshotsDelivered).toBeGreaterThan(0);
  expect(network.refusals).toEqual([]);

  const leaderHash = await settle(clock, leader.server.store.hashKV(0), "hash");
  for (const m of members) {
    expect(await settle(clock, m.server.store.hashKV(0), "hash")).toEqual(leaderHash);
    expect(m.server.store.compactRevision).toBe(30);
    expect(m.server.lessor.lookup(lease.ID)?.keys().map(String)).toEqual(leader.server.lessor.lookup(lease.ID)?.keys().map(String));
    expect(m.server.membership.list()).toEqual(leader.server.membership.list());
    expect(m.server.alarms).toEqual([{ memberId: leader.server.memberId, alarm: AlarmType.NOSPACE }]);
  }
  // And it keeps following the log: a write after the install reaches it.
  await settle(clock, leader.server.deleteRange({ key: b("k0"), rangeEnd: Buffer.alloc(0), prevKv: false }), "delete after");
  // The leader answers once the entry is applied in memory; its applied index moves when the
  // entry's batch is in the backend: wait for both members' revisions too.
  await until(clock, () => lagging.server.applied === leader.server.applied && lagging.server.store.currentRevision === leader.server.store.currentRevision, "the write after the install applied");
  expect(await settle(clock, lagging.server.store.hashKV(0), "hash")).toEqual(await settle(clock, leader.server.store.hashKV(0), "hash"));
});
