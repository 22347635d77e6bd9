/**
 * The member keeps its cluster state as etcd 3.4 does. The fixtures come from a real etcd 3.4.23
 * (one member, --snapshot-count 5 --enable-v2): `etcd-3.4.23-entries.txt` holds raft entries of
 * its WAL (index, type, data in hex: the bootstrap conf change, its publish, the cluster version,
 * a learner added and removed, v2 keys set, a directory made, a TTL key, a delete), and
 * `../v2store/fixtures/etcd-3.4.23-store.json` the data of the snapshot it took after them.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { InternalRaftRequest } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import { decodeEntry, encodeV2Request } from "../../src/server/apply/entry-codec.js";
import { applyV2Request } from "../../src/server/apply/v2-applier.js";
import { applyConfChangeToMembership, memberOfConfChange, validateConfChange } from "../../src/server/cluster/conf-change.js";
import { decodeMember, encodeMember, Membership, V2_STORE_INDEX_META_KEY, V2_STORE_META_KEY } from "../../src/server/cluster/membership.js";
import { V2Error } from "../../src/v2store/errors.js";
import { decideClusterVersion, type PeerVersions } from "../../src/server/cluster/cluster-version.js";
import type { RecordBucket, WriteSession } from "../../src/server/store-port.js";
import { decodeConfChange } from "../../src/raft/conf-change-codec.js";

const here = path.dirname(fileURLToPath(import.meta.url));
function readEntries(file: string): { index: number; type: number; data: Buffer }[] {
  return readFileSync(path.join(here, "fixtures", file), "utf8")
    .trim()
    .split("\n")
    .map((line) => {
      const [index, type, hex] = line.split(" ");
      return { index: Number(index), type: Number(type), data: Buffer.from(hex ?? "", "hex") };
    });
}
const entries = readEntries("etcd-3.4.23-entries.txt");
const storeJson = readFileSync(path.join(here, "..", "v2store", "fixtures", "etcd-3.4.23-store.json"), "utf8");

/** A write session that records what is staged. */
function fakeSession(): WriteSession & { staged: Map<string, Buffer | undefined> } {
  const staged = new Map<string, Buffer | undefined>();
  return {
    staged,
    stage(bucket: RecordBucket, key: Buffer, value: Buffer | undefined) {
      staged.set(`${bucket}/${key.toString()}`, value);
    },
    stageLatest(key: Buffer, value: Buffer) {
      staged.set(`meta/${key.toString()}`, value);
    },
  } as unknown as WriteSession & { staged: Map<string, Buffer | undefined> };
}

describe("etcd 3.4's log applied as etcd 3.4 applies it", () => {
  it("decodes 3.4's bare v2 Requests and our InternalRaftRequests apart", () => {
    const publish = entries.find((e) => e.index === 3)!;
    const d = decodeEntry(publish.data);
    expect(d.kind).toBe("v2");
    if (d.kind !== "v2") return;
    expect(d.req.Method).toBe("PUT");
    expect(d.req.Path).toBe("/0/members/15ffa49f0fb8a805/attributes");
    expect(d.req.Val).toBe('{"name":"n1","clientURLs":["http://127.0.0.1:40189"]}');
    expect(decodeEntry(entries.find((e) => e.index === 17)!.data).kind).toBe("v2");
    const ours = InternalRaftRequest.encode(InternalRaftRequest.fromPartial({ ID: 7n, header: { ID: 7n, username: "", authRevision: 0n }, put: { key: Buffer.from("k"), value: Buffer.from("v"), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } })).finish();
    expect(decodeEntry(ours).kind).toBe("internal");
    const wrapped = InternalRaftRequest.encode(InternalRaftRequest.fromPartial({ ID: 8n, v2: { ID: 8n, Method: "PUT", Path: "/0/version", Val: "3.4.0" } })).finish();
    const w = decodeEntry(wrapped);
    expect(w.kind === "internal" && w.req.v2?.Path).toBe("/0/version");
    expect(() => decodeEntry(Buffer.from([0x0c]))).toThrow();
  });

  it("writes publish and cluster version entries byte for byte as 3.4 does", () => {
    for (const index of [3, 4]) {
      const e = entries.find((x) => x.index === index)!;
      const d = decodeEntry(e.data);
      if (d.kind !== "v2") throw new Error("not v2");
      const { ID, Method, Path, Val } = d.req;
      expect(Buffer.from(encodeV2Request({ ID, Method, Path, Val })).toString("hex")).toBe(e.data.toString("hex"));
    }
  });

  it("replays 3.4's entries into the same v2 store and etcd 3.4's backend records", () => {
    const membership = new Membership(0xc8814170e5b727ban);
    let confState = { voters: [] as bigint[], learners: [] as bigint[] };
    const sessions: ReturnType<typeof fakeSession>[] = [];
    for (const e of entries) {
      const w = fakeSession();
      sessions.push(w);
      if (e.type === 1) {
        const cc = decodeConfChange(e.data);
        const m = memberOfConfChange(cc);
        expect(validateConfChange(membership, cc, m)).toBeUndefined();
        confState = cc.type === 1 ? { voters: confState.voters, learners: confState.learners.filter((x) => x !== cc.nodeId) } : confState;
        applyConfChangeToMembership(membership, cc, m, confState, w);
      } else {
        const d = decodeEntry(e.data);
        if (d.kind !== "v2") throw new Error(`entry ${e.index} is not a v2 request`);
        const r = applyV2Request(membership, d.req, w);
        expect(r.error).toBeUndefined();
      }
    }
    const ours = JSON.parse(membership.v2.save().toString());
    const theirs = JSON.parse(storeJson);
    expect(ours.Root).toEqual(theirs.Root);
    expect(ours.CurrentIndex).toBe(theirs.CurrentIndex);
    const strip = stripTtls;
    expect(strip(ours.WatcherHub.EventHistory.Queue.Events)).toEqual(strip(theirs.WatcherHub.EventHistory.Queue.Events));
    // What 3.4 writes to its backend buckets (members, members_removed, cluster).
    const all = new Map<string, Buffer | undefined>();
    for (const s of sessions) for (const [k, v] of s.staged) all.set(k, v);
    expect(all.get("members/15ffa49f0fb8a805")?.toString()).toBe('{"id":1585166596928219141,"peerURLs":["http://127.0.0.1:42261"],"name":"n1","clientURLs":["http://127.0.0.1:40189"]}');
    expect(all.get("members/27d724e97d334fa5")).toBeUndefined();
    expect(all.get("membersRemoved/27d724e97d334fa5")?.toString()).toBe("removed");
    expect(all.get("cluster/clusterVersion")?.toString()).toBe("3.4.0");
    expect(all.get(`meta/${V2_STORE_META_KEY.toString()}`)).toBeDefined();
    expect(membership.list().map((m) => m.name)).toEqual(["n1"]);
    expect(membership.isRemoved(0x27d724e97d334fa5n)).toBe(true);
    expect(membership.clusterVersion).toBe("3.4.0");
  });

  it("recovers members and the cluster version from 3.4's snapshot data, as 3.4 does", () => {
    const membership = new Membership(1n);
    const w = fakeSession();
    membership.recoverFromV2Store(Buffer.from(storeJson), 7, w);
    expect(membership.list()).toEqual([{ id: 0x15ffa49f0fb8a805n, name: "n1", peerUrls: ["http://127.0.0.1:42261"], clientUrls: ["http://127.0.0.1:40189"], isLearner: false }]);
    expect(membership.isRemoved(0x27d724e97d334fa5n)).toBe(true);
    expect(membership.clusterVersion).toBe("3.4.0");
    expect([...w.staged.keys()]).toEqual([`meta/${V2_STORE_META_KEY.toString()}`, `meta/${V2_STORE_INDEX_META_KEY.toString()}`]);
    expect(w.staged.get(`meta/${V2_STORE_INDEX_META_KEY.toString()}`)?.readBigUInt64BE()).toBe(7n);
    expect(membership.v2Index).toBe(7);
    // Byte for byte up to the stats (which count this member's own reads).
    const saved = membership.v2.save().toString();
    expect(saved.slice(0, saved.indexOf(',"Stats"'))).toBe(storeJson.slice(0, storeJson.indexOf(',"Stats"')));
  });
});

/** Event TTLs count seconds left when the event happened (a clock reading): left out of comparisons. */
function stripTtls(events: ({ node?: { ttl?: number }; prevNode?: { ttl?: number } } | null)[]): unknown[] {
  return events.map((ev) => (ev === null ? ev : { ...ev, node: { ...ev.node, ttl: undefined }, prevNode: ev.prevNode && { ...ev.prevNode, ttl: undefined } }));
}

describe("TTL keys expired by SYNC entries, as etcd 3.4 expires them", () => {
  it("replays 3.4's log (TTL key, TTL directory with a child, SYNCs) into the v2 store its snapshot holds", () => {
    const ttlEntries = readEntries("etcd-3.4.23-ttl-entries.txt");
    const theirs = JSON.parse(readFileSync(path.join(here, "..", "v2store", "fixtures", "etcd-3.4.23-ttl-store.json"), "utf8"));
    const membership = new Membership(1n);
    let syncs = 0;
    for (const e of ttlEntries) {
      const w = fakeSession();
      if (e.type === 1) {
        const cc = decodeConfChange(e.data);
        applyConfChangeToMembership(membership, cc, memberOfConfChange(cc), { voters: [cc.nodeId], learners: [] }, w);
        continue;
      }
      const d = decodeEntry(e.data);
      if (d.kind !== "v2") continue; // the v3 puts that made etcd snapshot
      if (d.req.Method === "SYNC") syncs++;
      expect(applyV2Request(membership, d.req, w).error).toBeUndefined();
    }
    expect(syncs).toBeGreaterThan(0);
    const ours = JSON.parse(membership.v2.save().toString());
    expect(ours.Root).toEqual(theirs.Root);
    expect(ours.CurrentIndex).toBe(theirs.CurrentIndex);
    expect(stripTtls(ours.WatcherHub.EventHistory.Queue.Events)).toEqual(stripTtls(theirs.WatcherHub.EventHistory.Queue.Events));
    expect(ours.Stats.expireCount).toBe(theirs.Stats.expireCount);
  });
});

describe("member JSON", () => {
  it("writes 3.4's conf change contexts byte for byte", () => {
    const boot = entries.find((e) => e.index === 1)!;
    const cc = decodeConfChange(boot.data);
    const m = memberOfConfChange(cc)!;
    expect(encodeMember(m).toString()).toBe(Buffer.from(cc.context).toString());
    const learner = decodeConfChange(entries.find((e) => e.index === 6)!.data);
    expect(encodeMember(memberOfConfChange(learner)!).toString()).toBe(Buffer.from(learner.context).toString());
    expect(encodeMember({ id: 5n, name: "", peerUrls: [], clientUrls: [], isLearner: false }, true).toString()).toBe('{"id":5,"peerURLs":null,"isPromote":true}');
  });

  it("keeps IDs above 2^53 exact, and reads the hex string IDs of older records", () => {
    const id = 0xfedcba9876543211n;
    const text = encodeMember({ id, name: "a<b", peerUrls: ["http://x:1"], clientUrls: [], isLearner: true }).toString();
    expect(text).toBe(`{"id":${id.toString(10)},"peerURLs":["http://x:1"],"isLearner":true,"name":"a\\u003cb"}`);
    expect(decodeMember(text).id).toBe(id);
    expect(decodeMember('{"id":"fedcba9876543211","peerURLs":["u"]}').id).toBe(id);
    expect(decodeMember(`{"id":${id},"peerURLs":null,"isPromote":true}`)).toMatchObject({ id, peerUrls: [], isPromote: true });
  });
});

describe("cluster version decision", () => {
  const members = [1n, 2n, 3n].map((id) => ({ id, name: "", peerUrls: [`http://m${id}`], clientUrls: [], isLearner: false }));
  const peers = (versions: Record<string, string | undefined>): PeerVersions => ({
    fetch: (m) => Promise.resolve(versions[m.peerUrls[0]!] === undefined ? undefined : { server: versions[m.peerUrls[0]!]!, cluster: "" }),
  });

  it("is the lowest server version, cut to major.minor", async () => {
    expect(await decideClusterVersion(members, 1n, "3.4.23", peers({ "http://m2": "3.4.9", "http://m3": "3.3.25" }))).toBe("3.3.0");
    expect(await decideClusterVersion(members, 1n, "3.4.23", peers({ "http://m2": "3.4.9", "http://m3": "3.4.23" }))).toBe("3.4.0");
  });

  it("is undecided while a member cannot be asked", async () => {
    expect(await decideClusterVersion(members, 1n, "3.4.23", peers({ "http://m2": "3.4.9" }))).toBeUndefined();
    expect(await decideClusterVersion([members[0]!], 1n, "3.4.23", peers({}))).toBe("3.4.0");
  });
});

describe("data dirs written before etcd 3.4's layout", () => {
  it("load from the old records and rebuild the v2 store 3.4 would hold", () => {
    const membership = new Membership(1n);
    const old = (id: bigint, name: string) => Buffer.from(JSON.stringify({ id: id.toString(16), name, peerURLs: [`http://p${id.toString(16)}`], clientURLs: [`http://c${id.toString(16)}`], isLearner: false }));
    membership.load(
      {
        members: [
          [Buffer.from("a"), old(0xan, "a")],
          [Buffer.from("clusterVersion"), Buffer.from("3.4.0")],
          [Buffer.from("removed/b"), Buffer.from("1")],
        ],
        membersRemoved: [],
        cluster: [],
      },
      { index: 3, data: Buffer.from('{"clusterVersion":"3.4.0"}') },
      5,
    );
    expect(membership.v2Index).toBe(5);
    expect(membership.list()).toEqual([{ id: 0xan, name: "a", peerUrls: ["http://pa"], clientUrls: ["http://ca"], isLearner: false }]);
    expect(membership.isRemoved(0xbn)).toBe(true);
    expect(membership.clusterVersion).toBe("3.4.0");
    const copy = new Membership(1n);
    const w = fakeSession();
    copy.recoverFromV2Store(membership.v2.save(), 5, w);
    expect(copy.list()).toEqual(membership.list());
    expect(copy.isRemoved(0xbn)).toBe(true);
    expect(copy.clusterVersion).toBe("3.4.0");
  });
});

describe("the v2 store image's index", () => {
  const image = (): Buffer => {
    const m = new Membership(1n);
    m.v2Index = 4;
    m.add({ id: 0xan, name: "a", peerUrls: ["http://pa"], clientUrls: [], isLearner: false }, fakeSession());
    m.v2.set("/1/user", false, "v");
    return m.v2.save();
  };
  const records = (v2Store?: Buffer, v2StoreIndex?: number) => ({ members: [], membersRemoved: [], cluster: [], v2Store, v2StoreIndex });

  it("an image without one (saved on every v2 write before) is as of the consistent index, and that index is staged once", () => {
    const m = new Membership(1n);
    m.load(records(image()), undefined, 9);
    expect(m.v2Index).toBe(9);
    expect(m.v2.get("/1/user").node.value).toBe("v");
    const w = fakeSession();
    const commits: number[] = [];
    const store = { beginWrite: () => Object.assign(w, { commit: async (i: number) => void commits.push(i) }), consistentIndex: () => 9 };
    expect(m.writeLoadedImageIndex(store)).toBeDefined();
    expect(w.staged.get(`meta/${V2_STORE_INDEX_META_KEY.toString()}`)?.readBigUInt64BE()).toBe(9n);
    expect(commits).toEqual([9]);
    expect(m.writeLoadedImageIndex(store)).toBeUndefined();
  });

  it("the newer of the image and the snapshot is taken", () => {
    const older = new Membership(1n);
    older.add({ id: 0xan, name: "a", peerUrls: ["http://pa"], clientUrls: [], isLearner: false }, fakeSession());
    const snapshot = { index: 6, data: older.v2.save() };
    const fromImage = new Membership(1n);
    fromImage.load(records(image(), 7), snapshot, 9);
    expect(fromImage.v2Index).toBe(7);
    expect(fromImage.v2.get("/1/user").node.value).toBe("v");
    expect(fromImage.writeLoadedImageIndex({ beginWrite: () => fakeSession(), consistentIndex: () => 9 })).toBeUndefined();
    const fromSnapshot = new Membership(1n);
    fromSnapshot.load(records(image(), 5), snapshot, 9);
    expect(fromSnapshot.v2Index).toBe(6);
    expect(() => fromSnapshot.v2.get("/1/user")).toThrow(V2Error);
    expect(fromSnapshot.list().map((x) => x.id)).toEqual([0xan]);
  });
});
