/**
 * Installing a leader's snapshot on the apply path (etcd's applySnapshot), at the level of the
 * member's rooms: two apply sides (store, membership, alarms, lessor, apply loop), each on a real
 * backend; the source's image goes through ReceivedSnapshots into the target's apply loop, which
 * must come out as the source: same HashKV, revisions, ranges, leases with their keys, members,
 * alarms and configuration, and watchers that resume from the new contents. The databases kept
 * for snapshots up to the installed one are released once it is in.
 */
import { afterEach, describe, expect, it } from "vitest";
import { InternalRaftRequest } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import { AlarmRequest_AlarmAction, AlarmType, CompactionRequest, DeleteRangeRequest, PutRequest } from "@etcd-ts/proto/etcdserverpb/rpc";
import { Lessor } from "../../src/lease/lessor.js";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { MvccStore } from "../../src/mvcc/kv-store.js";
import type { WatchMessage, WatchSink } from "../../src/mvcc/watch-hub.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { encodeConfChange } from "../../src/raft/conf-change-codec.js";
import { ConfChangeType, EntryType, type ConfChange, type ConfState, type Entry, type Snapshot } from "../../src/raft/types.js";
import { AlarmStore } from "../../src/server/alarms.js";
import { applierForAlarms } from "../../src/server/apply/alarm-appliers.js";
import { ApplyLoop, type ApplyRaft } from "../../src/server/apply/apply-loop.js";
import { BackendApplier } from "../../src/server/apply/backend-applier.js";
import { encodeMember, loadMembershipRecords, Membership, V2_STORE_META_KEY } from "../../src/server/cluster/membership.js";
import { LeaseRecords } from "../../src/server/lease-records.js";
import { MvccStorePort } from "../../src/server/mvcc-store-port.js";
import { Proposer, raftRequest } from "../../src/server/proposer.js";
import { RECEIVED_SNAPSHOT_IMAGES_MAX, ReceivedSnapshots } from "../../src/server/received-snapshots.js";
import { MemorySnapshotDatabases } from "../../src/server/snapshot-databases.js";
import { PeerMessageRefusedError } from "../../src/server/transport-port.js";
import { MemorySnapDir } from "../../src/snap/memory-snapshotter.js";
import { snapshotDatabaseFileName } from "../../src/server/transport-port.js";
import { ManualClock, tempDir } from "../mvcc/helpers.js";

const CLUSTER_ID = 0x1000n;
const ZERO = Buffer.from([0]);
const b = (x: string): Buffer => Buffer.from(x);

/** One member's apply side: everything between the driver and the backend. */
class ApplySide {
  private confState: ConfState = { voters: [], learners: [] };
  nextIndex = 1;
  /** Every entry applied through `apply` and `addMember`, in order. */
  readonly entries: Entry[] = [];

  private constructor(
    readonly store: MvccStorePort,
    readonly membership: Membership,
    readonly alarms: AlarmStore,
    readonly lessor: Lessor,
    readonly images: ReceivedSnapshots,
    readonly loop: ApplyLoop,
    /** Where the received databases are kept (the member's snap directory). */
    readonly snapDir: MemorySnapDir,
  ) {}

  static async open(dir: string, clock: ManualClock): Promise<ApplySide> {
    const backend = await Backend.open(dir);
    const store = new MvccStorePort(backend, await MvccStore.open(backend, {}, { clock }));
    const membership = new Membership(CLUSTER_ID);
    const alarms = new AlarmStore();
    const leaseRecords = new LeaseRecords(store);
    const lessor = new Lessor({ minTtlSeconds: 1 }, { persistence: leaseRecords, clock });
    const proposer = new Proposer({ memberId: 1n, maxRequestBytes: 1 << 20, requestTimeoutMs: 5000 }, { raft: { propose() {}, proposeConfChange() {}, knowsLeader: () => true }, clock });
    const applier = new BackendApplier({ store, lessor, membership, alarms });
    const snapDir = new MemorySnapDir();
    const images = new ReceivedSnapshots(new MemorySnapshotDatabases(snapDir));
    let side: ApplySide | undefined;
    const raft: ApplyRaft = {
      applyConfChange: (cc) => side!.reconfigure(cc),
      snapshot: async (index, confState, data) => ({ metadata: { index, term: 1, confState }, data }),
      purgeSnapshots: async () => undefined,
    };
    const loop = new ApplyLoop(
      { snapshotCount: 1_000_000, snapshotCatchUpEntries: 0, maxSnapshots: 0 },
      {
        store, proposer, raft, membership, alarms, lessor, leaseRecords, snapshotImages: images,
        applier: () => applierForAlarms(applier, (a) => alarms.isRaised(a)),
        onConfChange: () => undefined,
        onWriteFailed: (err) => {
          throw err;
        },
        logger: nullLogger,
      },
      0,
      { voters: [], learners: [] },
    );
    side = new ApplySide(store, membership, alarms, lessor, images, loop, snapDir);
    return side;
  }

  private reconfigure(cc: ConfChange): ConfState {
    const voters = this.confState.voters.filter((v) => v !== cc.nodeId);
    if (cc.type === ConfChangeType.AddNode) voters.push(cc.nodeId);
    this.confState = { voters, learners: [] };
    return this.confState;
  }

  /** Applies requests as consecutive normal entries (one batch). */
  async apply(...requests: Array<Partial<InternalRaftRequest>>): Promise<void> {
    const entries: Entry[] = requests.map((r) => ({
      term: 1, index: this.nextIndex++, type: EntryType.Normal, data: InternalRaftRequest.encode(raftRequest(r)).finish(),
    }));
    this.entries.push(...entries);
    await this.loop.apply({ entries });
  }

  async addMember(id: bigint, name: string): Promise<void> {
    const cc: ConfChange = { type: ConfChangeType.AddNode, nodeId: id, context: encodeMember({ id, name, peerUrls: [`http://${name}:2380`], clientUrls: [], isLearner: false }) };
    const entry: Entry = { term: 1, index: this.nextIndex++, type: EntryType.ConfChange, data: encodeConfChange(cc) };
    this.entries.push(entry);
    await this.loop.apply({ entries: [entry] });
  }

  async everything(): Promise<string[]> {
    const r = await this.store.range(ZERO, ZERO, {});
    return r.kvs.map((kv) => `${kv.key}=${kv.value}@${kv.createRevision}/${kv.modRevision}/v${kv.version}/l${kv.lease}`);
  }

  leases(): string[] {
    return this.lessor.leases().map((l) => `${l.id}:${l.ttlSeconds}:[${this.lessor.lookup(l.id)!.keys().map(String).join(",")}]`);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}

const put = (key: string, value: string, lease = 0n): Partial<InternalRaftRequest> => ({ put: PutRequest.fromPartial({ key: b(key), value: b(value), lease }) });
const del = (key: string, end?: string): Partial<InternalRaftRequest> => ({ deleteRange: DeleteRangeRequest.fromPartial({ key: b(key), rangeEnd: end === undefined ? undefined : b(end) }) });

class Collector implements WatchSink {
  readonly messages: WatchMessage[] = [];
  send(m: WatchMessage): boolean {
    this.messages.push(m);
    return true;
  }
  get lines(): string[] {
    return this.messages.flatMap((m) => ("events" in m ? m.events.map((e) => `${e.type} ${e.kv.key}=${e.kv.value}@${e.kv.modRevision}`) : [`compacted@${m.compactRevision}`]));
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 5000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const opened: ApplySide[] = [];
const cleanups: Array<() => Promise<void>> = [];

async function side(): Promise<ApplySide> {
  const t = await tempDir();
  cleanups.push(t.cleanup);
  const s = await ApplySide.open(t.dir, new ManualClock());
  opened.push(s);
  return s;
}

afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  for (const c of cleanups.splice(0)) await c();
});

/** Members 1 and 2 (named), leases with keys, deletes, a revoke, a compaction at 15, an alarm. */
async function sourceHistory(source: ApplySide): Promise<void> {
  await source.addMember(1n, "one");
  await source.addMember(2n, "two");
  await source.apply({ clusterMemberAttrSet: { memberID: 1n, name: "one", clientUrls: ["http://one:2379"] } }, { clusterVersionSet: { ver: "3.4.0" } });
  await source.apply({ leaseGrant: { ID: 100n, TTL: 60n } }, { leaseGrant: { ID: 200n, TTL: 30n } });
  for (let i = 0; i < 12; i++) await source.apply(put(`k${i % 6}`, `v${i}`, i % 3 === 0 ? 100n : i % 3 === 1 ? 200n : 0n));
  await source.apply(del("k2"), { leaseRevoke: { ID: 200n } });
  await source.apply(put("k9", "nine", 100n), put("a", "x"));
  await source.apply({ compaction: CompactionRequest.fromPartial({ revision: 15n }) });
  for (let i = 0; i < 6; i++) await source.apply(put(`k${i}`, `w${i}`));
  await source.apply({ alarm: { action: AlarmRequest_AlarmAction.ACTIVATE, memberID: 1n, alarm: AlarmType.NOSPACE } });
}

/** Member 3, a lease with keys, keys t*: nothing in common with the source. */
async function targetHistory(target: ApplySide): Promise<void> {
  await target.addMember(3n, "three");
  await target.apply({ leaseGrant: { ID: 300n, TTL: 90n } });
  for (let i = 0; i < 4; i++) await target.apply(put(`t${i}`, `${i}`, 300n));
  await target.apply({ alarm: { action: AlarmRequest_AlarmAction.ACTIVATE, memberID: 3n, alarm: AlarmType.CORRUPT } });
}

function snapshotAt(index: number): Snapshot {
  return { metadata: { index, term: 2, confState: { voters: [1n, 2n], learners: [] } }, data: new Uint8Array(0) };
}

describe("installing a leader's snapshot", () => {
  it("makes the target what the source is: store, leases and their keys, members, alarms, configuration", async () => {
    const source = await side();
    const target = await side();
    await sourceHistory(source);
    await targetHistory(target);
    const index = source.store.consistentIndex();
    expect(index).toBeGreaterThan(target.store.consistentIndex());

    const image: [Buffer, Buffer][] = [];
    for await (const kv of source.store.image()) image.push(kv);
    MemorySnapshotDatabases.keep(target.snapDir, index - 1, image); // an older one, never installed
    MemorySnapshotDatabases.keep(target.snapDir, index, image);
    MemorySnapshotDatabases.keep(target.snapDir, index + 1, image); // a newer one, on its way
    target.images.keep(index, new MemorySnapshotDatabases(target.snapDir).open(snapshotAt(index).metadata)!, target.loop.applied);
    await target.loop.apply({ snapshot: snapshotAt(index), entries: [] });
    expect(target.snapDir.fileNames(), "the install released the kept databases up to its index").toEqual([snapshotDatabaseFileName(index + 1)]);

    expect(await target.store.hashKV(0)).toEqual(await source.store.hashKV(0));
    expect(target.store.currentRevision).toBe(source.store.currentRevision);
    expect(target.store.compactRevision).toBe(15);
    expect(await target.everything()).toEqual(await source.everything());
    expect(target.store.consistentIndex()).toBe(index);
    expect(target.leases()).toEqual(source.leases());
    expect(target.leases()).toEqual(["100:60:[k9]"]); // k0 and k3 were put again without it
    // Members come from the v2 store, as in etcd 3.4: "two" never published its name (the one in
    // its conf change context is kept only in the backend record).
    expect(target.membership.list().map((m) => ({ ...m, name: "" }))).toEqual(source.membership.list().map((m) => ({ ...m, name: "" })));
    expect(target.membership.list().map((m) => m.name)).toEqual(["one", ""]);
    expect(target.membership.clusterVersion).toBe("3.4.0");
    expect(target.alarms.list()).toEqual([{ memberId: 1n, alarm: AlarmType.NOSPACE }]);
    expect(target.loop.applied).toBe(index);
    expect(target.loop.configuration).toEqual({ voters: [1n, 2n], learners: [] });
    expect(target.images.size).toBe(0);

    // Both go on alike from there (a NOSPACE alarm still lets deletes through).
    target.nextIndex = source.nextIndex;
    for (const s of [source, target]) await s.apply(del("k0"), { leaseRevoke: { ID: 100n } });
    expect(await target.store.hashKV(0)).toEqual(await source.store.hashKV(0));
    expect(target.leases()).toEqual([]);
  });

  it("takes the membership from the snapshot's v2 store when the image has none (an etcd 3.4 leader's)", async () => {
    const source = await side();
    const target = await side();
    await source.addMember(1n, "one");
    await source.addMember(0xfedcba9876543210n, "big");
    await source.apply({ v2: { ID: 9n, Method: "PUT", Path: "/0/members/1/attributes", Val: '{"name":"one","clientURLs":["http://one:2379"]}' } });
    await source.apply({ v2: { ID: 10n, Method: "PUT", Path: "/0/version", Val: "3.4.0" } });
    for (let i = 0; i < 10; i++) await source.apply(put(`k${i}`, `${i}`));
    await targetHistory(target);
    const index = source.store.consistentIndex();
    // etcd 3.4's image: its buckets, without our v2 store image in meta.
    const v2Key = Buffer.concat([Buffer.from([0x02]), V2_STORE_META_KEY]);
    const full = source.store.image();
    const image = (async function* () {
      for await (const [k, v] of full) if (!k.equals(v2Key)) yield [k, v] as [Buffer, Buffer];
    })();
    target.images.keep(index, image, target.loop.applied);
    await target.loop.apply({ snapshot: { ...snapshotAt(index), data: source.membership.v2.save() }, entries: [] });
    // As in etcd 3.4: a member's name from its conf change context is not in the v2 store, only
    // what it published; "big" never published.
    const unpublished = source.membership.list().map((m) => (m.id === 1n ? m : { ...m, name: "" }));
    expect(target.membership.list()).toEqual(unpublished);
    expect(target.membership.get(1n)?.clientUrls).toEqual(["http://one:2379"]);
    expect(target.membership.clusterVersion).toBe("3.4.0");
    const upToStats = (j: Buffer): string => j.toString().slice(0, j.indexOf(',"Stats"')); // stats count local reads
    expect(upToStats(target.membership.v2.save())).toBe(upToStats(source.membership.v2.save()));
    // And the records were written: a restart of the target loads the same membership.
    const again = new Membership(CLUSTER_ID);
    again.load(await loadMembershipRecords(target.store), undefined, target.store.consistentIndex());
    expect(again.list()).toEqual(unpublished);
    expect(upToStats(again.v2.save())).toBe(upToStats(target.membership.v2.save()));
  });

  it("takes a snapshot whose data is the v2 store's JSON", async () => {
    const source = await side();
    await source.addMember(1n, "one");
    const data = source.membership.v2.save();
    expect(JSON.parse(data.toString()).Root.Children["0"].Children.members.Children["1"].Children.raftAttributes.Value).toBe('{"peerURLs":["http://one:2380"]}');
  });

  it("skips the entries an image newer than its snapshot already holds", async () => {
    const source = await side();
    const target = await side();
    await source.addMember(1n, "one");
    await source.addMember(2n, "two");
    for (let i = 0; i < 10; i++) await source.apply(put(`k${i}`, `${i}`));
    const snapshotIndex = source.store.consistentIndex();
    const later = [put("k1", "again"), put("k2", "again")];
    await source.apply(...later);
    await targetHistory(target);

    target.images.keep(snapshotIndex, source.store.image(), target.loop.applied);
    await target.loop.apply({ snapshot: snapshotAt(snapshotIndex), entries: [] });
    expect(target.store.consistentIndex()).toBe(snapshotIndex + 2);
    // The entries after the snapshot arrive from the log: already in the image, not re-applied.
    target.nextIndex = snapshotIndex + 1;
    await target.apply(...later);
    expect(await target.store.hashKV(0)).toEqual(await source.store.hashKV(0));
    expect(target.store.currentRevision).toBe(source.store.currentRevision);
  });

  it("brings the v2 store from the newer of the snapshot's and the image's up to the image with the entries after it", async () => {
    const v2put = (id: bigint, key: string, value: string): Partial<InternalRaftRequest> => ({ v2: { ID: id, Method: "PUT", Path: `/1/${key}`, Val: value } });
    const upToStats = (j: Buffer): string => j.toString().slice(0, j.indexOf(',"Stats"'));
    for (const membershipChangeAfterSnapshot of [false, true]) {
      const source = await side();
      const target = await side();
      await source.addMember(1n, "one");
      for (let i = 0; i < 5; i++) await source.apply(v2put(BigInt(20 + i), `a${i}`, `${i}`), put(`k${i}`, `${i}`));
      const snapshotIndex = source.store.consistentIndex();
      const snapshotData = source.membership.v2.save();
      // After the snapshot: v2 writes (not saved in the image), and maybe a membership change
      // (which saves the image, as of its own index) followed by more v2 writes.
      await source.apply(v2put(30n, "a0", "again"), { v2: { ID: 31n, Method: "POST", Path: "/1/queue", Val: "q" } });
      if (membershipChangeAfterSnapshot) await source.addMember(2n, "two");
      await source.apply(v2put(32n, "a9", "nine"), { v2: { ID: 33n, Method: "DELETE", Path: "/1/a1" } }, put("k9", "x"));
      const later: Entry[] = [];
      for (let i = snapshotIndex + 1; i <= source.store.consistentIndex(); i++) later.push(source.entries[i - 1]!);
      await targetHistory(target);

      target.images.keep(snapshotIndex, source.store.image(), target.loop.applied);
      await target.loop.apply({ snapshot: { ...snapshotAt(snapshotIndex), data: snapshotData }, entries: [] });
      expect(target.store.consistentIndex()).toBe(source.store.consistentIndex());
      // The image is ahead of the snapshot: its entries arrive from the log, already in the
      // backend; the v2 requests among them still reach the v2 store, once.
      await target.loop.apply({ entries: later });
      expect(upToStats(target.membership.v2.save()), `membership change after the snapshot: ${membershipChangeAfterSnapshot}`).toBe(upToStats(source.membership.v2.save()));
      expect(target.membership.v2Index).toBe(source.store.consistentIndex());
      await target.loop.apply({ entries: later });
      expect(upToStats(target.membership.v2.save())).toBe(upToStats(source.membership.v2.save()));
      expect(await target.store.hashKV(0)).toEqual(await source.store.hashKV(0));
      expect(target.membership.list().map((m) => m.id)).toEqual(source.membership.list().map((m) => m.id));
    }
  });

  it("takes the v2 store from a later snapshot at or below the consistent index, whose entries raft skips", async () => {
    const upToStats = (j: Buffer): string => j.toString().slice(0, j.indexOf(',"Stats"'));
    const source = await side();
    const target = await side();
    await source.addMember(1n, "one");
    await source.apply({ v2: { ID: 20n, Method: "PUT", Path: "/1/a", Val: "1" } });
    const first = { index: source.store.consistentIndex(), data: source.membership.v2.save() };
    await source.apply({ v2: { ID: 21n, Method: "PUT", Path: "/1/b", Val: "2" } }, { v2: { ID: 22n, Method: "POST", Path: "/1/q", Val: "3" } }, put("k", "v"));
    const second = { index: source.store.consistentIndex(), data: source.membership.v2.save() };

    // The first snapshot comes with an image as of the second's index; then the second snapshot
    // itself (at the consistent index): the entries in between never reach the apply loop.
    target.images.keep(first.index, source.store.image(), target.loop.applied);
    await target.loop.apply({ snapshot: { ...snapshotAt(first.index), data: first.data }, entries: [] });
    expect(target.store.consistentIndex()).toBe(second.index);
    expect(target.membership.v2Index).toBe(first.index);
    await target.loop.apply({ snapshot: { ...snapshotAt(second.index), data: second.data }, entries: [] });
    expect(target.membership.v2Index).toBe(second.index);
    expect(upToStats(target.membership.v2.save())).toBe(upToStats(source.membership.v2.save()));
    expect(target.loop.applied).toBe(second.index);
  });

  it("sends the target's watchers to catch up from the image, or cancels them as compacted", async () => {
    const source = await side();
    const target = await side();
    await sourceHistory(source); // compacted at 15, head 23
    await targetHistory(target); // head 5
    const early = new Collector(); // next revision 6: compacted in the image
    target.store.watch({ key: b("k"), end: b("l"), startRevision: 0, prevKv: false }, early);
    const ahead = new Collector(); // waits for revision 18
    const aheadWatcher = target.store.watch({ key: b("k"), end: b("l"), startRevision: 18, prevKv: false }, ahead);
    const index = source.store.consistentIndex();

    target.images.keep(index, source.store.image(), target.loop.applied);
    await target.loop.apply({ snapshot: snapshotAt(index), entries: [] });
    await until(() => aheadWatcher.isSynced && early.messages.length > 0, "watchers caught up");

    const expected = new Collector();
    const w = source.store.watch({ key: b("k"), end: b("l"), startRevision: 18, prevKv: false }, expected);
    await until(() => w.isSynced, "the source's watcher synced");
    expect(early.lines).toEqual(["compacted@15"]);
    expect(ahead.lines).toEqual(expected.lines);
    expect(ahead.lines).toEqual(["PUT k0=w0@18", "PUT k1=w1@19", "PUT k2=w2@20", "PUT k3=w3@21", "PUT k4=w4@22", "PUT k5=w5@23"]);
  });

  it("a leader's snapshot without its image is a broken invariant", async () => {
    const target = await side();
    await targetHistory(target);
    await expect(target.loop.apply({ snapshot: snapshotAt(100), entries: [] })).rejects.toThrow(/no backend image was received with the snapshot at index 100/);
  });

  it("a snapshot at or below the consistent index installs nothing", async () => {
    const target = await side();
    await targetHistory(target);
    const before = await target.store.hashKV(0);
    const index = target.store.consistentIndex();
    await target.loop.apply({ snapshot: { ...snapshotAt(index), metadata: { index, term: 1, confState: { voters: [3n], learners: [] } } }, entries: [] });
    expect(await target.store.hashKV(0)).toEqual(before);
    expect(target.loop.applied).toBe(index);
    expect(target.leases()).toEqual(["300:90:[t0,t1,t2,t3]"]);
  });
});

describe("ReceivedSnapshots", () => {
  const image = (tag: string): AsyncIterable<[Buffer, Buffer]> => ({
    async *[Symbol.asyncIterator]() {
      yield [b(tag), b(tag)];
    },
  });

  it("hands each image to its snapshot, dropping older ones and those at or below the applied index", () => {
    const r = new ReceivedSnapshots();
    const i10 = image("10");
    r.keep(5, image("5"), 0);
    r.keep(10, i10, 0);
    r.keep(20, image("20"), 0);
    expect(r.size).toBe(3);
    r.keep(30, image("30"), 6); // 5 can no longer be restored by raft
    expect(r.size).toBe(3);
    expect(() => r.take(5)).toThrow(/no backend image/);
    expect(r.take(10)).toBe(i10);
    expect(r.size).toBe(2);
    r.take(30); // 20 was superseded
    expect(r.size).toBe(0);
  });

  it("refuses more than its bound, but replaces an image for the same index", () => {
    const r = new ReceivedSnapshots();
    for (let i = 1; i <= RECEIVED_SNAPSHOT_IMAGES_MAX; i++) r.keep(i * 10, image(`${i}`), 0);
    const again = image("again");
    r.keep(10, again, 0);
    expect(r.take(10)).toBe(again);
    r.keep(100, image("100"), 0);
    let refusal: unknown;
    try {
      r.keep(200, image("200"), 0);
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toBeInstanceOf(PeerMessageRefusedError);
    expect((refusal as PeerMessageRefusedError).code).toBe("SnapshotBacklogFull");
  });
});
