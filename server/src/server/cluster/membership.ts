/**
 * The cluster's members as the apply loop sees them: added and removed by conf-change entries,
 * named by member-attribute entries, with the cluster version. Kept as etcd 3.4 keeps them, in
 * two places written in the same batch as the entry that changed them:
 *
 *  - the v2 store (`v2`): "/0/members/<hex id>/raftAttributes" = {"peerURLs":[..],"isLearner":..},
 *    "/0/members/<hex id>/attributes" = {"name":..,"clientURLs":[..]},
 *    "/0/removed_members/<hex id>" = "", "/0/version" = "3.4.0", beside the keys of v2 clients.
 *    Its JSON is the data of raft snapshots. A change of the membership also keeps the whole image
 *    in the backend's meta bucket (`V2_STORE_META_KEY`), with the raft index it is as of
 *    (`V2_STORE_INDEX_META_KEY`), since conf changes already in the backend are not applied again
 *    at restart. A v2 client's write is not saved there (that would cost the whole store per
 *    write): as etcd 3.4 does, the store is rebuilt from the newer of that image and the raft
 *    snapshot, plus the v2 requests after it in the WAL (`v2Index`; v2-applier.ts);
 *  - the backend buckets etcd 3.4 has: "members" <hex id> = the member's JSON (Go's field order,
 *    the id a decimal uint64), "members_removed" <hex id> = "removed", "cluster"
 *    "clusterVersion" = the version.
 *
 * Data dirs written before this layout keep everything in "members" (`clusterVersion`,
 * `removed/<hex id>`, member JSON with a hex string id); they still load, and their v2 store is
 * rebuilt from the records.
 */
import { goJsonString } from "../../pkg/go-json.js";
import { V2Error, V2ErrorCode } from "../../v2store/errors.js";
import { V2Store } from "../../v2store/v2-store.js";
import { decodeUint64, encodeUint64 } from "../../mvcc/backend/backend.js";
import type { StorePort, WriteSession } from "../store-port.js";

export interface MemberRecord {
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

/** The meta key the v2 store's JSON image is kept under (not part of etcd's bbolt image). */
export const V2_STORE_META_KEY = Buffer.from("v2store");
/**
 * The meta key of the raft index the v2 store image is as of (8 bytes, big-endian). An image
 * without it (data dirs written before) is as of the backend's consistent index.
 */
export const V2_STORE_INDEX_META_KEY = Buffer.from("v2storeIndex");
const MEMBERS_PREFIX = "/0/members";
const REMOVED_PREFIX = "/0/removed_members";
const VERSION_KEY = "/0/version";
const CLUSTER_VERSION_KEY = Buffer.from("clusterVersion");

function jsonStrings(xs: string[] | undefined): string {
  return xs === undefined ? "null" : "[" + xs.map(goJsonString).join(",") + "]";
}

/**
 * etcd's membership.Member as Go's encoding/json writes it: id (decimal uint64), peerURLs,
 * isLearner, name, clientURLs (the last three omitted when empty). With `isPromote` set, etcd's
 * ConfigChangeContext (the member, then "isPromote").
 */
export function encodeMember(m: MemberRecord, isPromote?: boolean): Buffer {
  let s = `{"id":${m.id.toString(10)},"peerURLs":${m.peerUrls.length === 0 && isPromote ? "null" : jsonStrings(m.peerUrls)}`;
  if (m.isLearner) s += `,"isLearner":true`;
  if (m.name !== "") s += `,"name":${goJsonString(m.name)}`;
  if (m.clientUrls.length > 0) s += `,"clientURLs":${jsonStrings(m.clientUrls)}`;
  if (isPromote !== undefined) s += `,"isPromote":${isPromote}`;
  return Buffer.from(s + "}");
}

/** etcd's RaftAttributes JSON (the v2 store's raftAttributes value). */
export function encodeRaftAttributes(peerUrls: string[], isLearner: boolean): string {
  return `{"peerURLs":${jsonStrings(peerUrls)}${isLearner ? ',"isLearner":true' : ""}}`;
}

/** etcd's Attributes JSON (the v2 store's attributes value, and what a v2 attributes PUT carries). */
export function encodeAttributes(name: string, clientUrls: string[]): string {
  const parts: string[] = [];
  if (name !== "") parts.push(`"name":${goJsonString(name)}`);
  if (clientUrls.length > 0) parts.push(`"clientURLs":${jsonStrings(clientUrls)}`);
  return "{" + parts.join(",") + "}";
}

/**
 * Parses member JSON (etcd's Member or ConfigChangeContext): the id as a JSON number of any size
 * (read from the text, not through a float) or, in records written before, a hex string.
 * @throws Error on JSON that is not a member.
 */
export function decodeMember(data: Uint8Array | string): MemberRecord & { isPromote: boolean } {
  const text = typeof data === "string" ? data : Buffer.from(data).toString();
  // Quote a numeric id so that JSON.parse keeps all 64 bits.
  const quoted = text.replace(/^(\s*\{\s*"id"\s*:\s*)(\d+)/, '$1"#$2"');
  const json = JSON.parse(quoted) as { id?: string | number; name?: string; peerURLs?: string[] | null; clientURLs?: string[] | null; isLearner?: boolean; isPromote?: boolean };
  let id: bigint;
  if (typeof json.id === "string" && json.id.startsWith("#")) id = BigInt(json.id.slice(1));
  else if (typeof json.id === "string") id = BigInt("0x" + json.id);
  else if (typeof json.id === "number") id = BigInt(json.id);
  else if (json.id === undefined) id = 0n;
  else throw new Error(`member JSON with a bad id: ${text}`);
  return {
    id: BigInt.asUintN(64, id),
    name: json.name ?? "",
    peerUrls: json.peerURLs ?? [],
    clientUrls: json.clientURLs ?? [],
    isLearner: json.isLearner ?? false,
    isPromote: json.isPromote ?? false,
  };
}

function hexId(id: bigint): string {
  return id.toString(16);
}

function memberKey(id: bigint): Buffer {
  return Buffer.from(hexId(id));
}

/** The backend records membership loads from (start-up, after a snapshot is installed). */
export interface MembershipRecords {
  members: [Buffer, Buffer][];
  membersRemoved: [Buffer, Buffer][];
  cluster: [Buffer, Buffer][];
  /** The meta bucket's v2 store image, if any. */
  v2Store?: Buffer;
  /** The raft index that image is as of, when recorded. */
  v2StoreIndex?: number;
}

export class Membership {
  private readonly members = new Map<bigint, MemberRecord>();
  private changeCount = 0;
  private readonly removed = new Set<bigint>();
  private v2Store = new V2Store();
  clusterVersion = "";
  /**
   * The raft index the v2 store is as of: every entry up to it that changes the store has been
   * applied to it. The apply loop moves it to each entry before applying the entry, so that an
   * image staged during the apply is stamped with the entry's index.
   */
  v2Index = 0;
  /** The image `load` took had no index (written before it was kept): see writeLoadedImageIndex. */
  private loadedImageUnstamped = false;

  constructor(readonly clusterId: bigint) {}

  /** The v2 store the membership lives in (its JSON is the raft snapshot's data). */
  get v2(): V2Store {
    return this.v2Store;
  }

  /**
   * Replaces the membership with what is persisted (start-up, or after a snapshot is installed),
   * as of the backend's `consistentIndex`. As etcd 3.4 does, the members, the removed IDs and the
   * version come from the v2 store: the newer of its image in the backend and `snapshot` (the raft
   * snapshot, when its data is a v2 store JSON). `v2Index` is then the index that one is as of;
   * the caller applies the v2 requests after it, up to `consistentIndex`, to the v2 store
   * (catchUpV2Store). No membership change lies between the two: each one saves the image.
   * Without either (data dirs from before the v2 store was kept) they come from the records, and
   * the v2 store is rebuilt from them.
   */
  load(records: MembershipRecords, snapshot: { index: number; data: Uint8Array } | undefined, consistentIndex: number): void {
    const fromSnapshot = snapshot !== undefined && isV2StoreJson(snapshot.data) ? snapshot : undefined;
    let image: { index: number; data: Uint8Array } | undefined =
      records.v2Store === undefined ? undefined : { index: records.v2StoreIndex ?? consistentIndex, data: records.v2Store };
    if (fromSnapshot !== undefined && (image === undefined || fromSnapshot.index > image.index)) image = fromSnapshot;
    this.loadedImageUnstamped = image !== undefined && image.data === records.v2Store && records.v2StoreIndex === undefined;
    if (image !== undefined) {
      const store = new V2Store();
      store.recover(image.data);
      this.adopt(store);
      this.v2Index = image.index;
      return;
    }
    this.v2Index = consistentIndex;
    this.changeCount++;
    this.members.clear();
    this.removed.clear();
    this.clusterVersion = "";
    for (const [k, v] of records.members) {
      const key = k.toString();
      if (key === "clusterVersion") this.clusterVersion = v.toString();
      else if (key.startsWith("removed/")) this.removed.add(BigInt("0x" + key.slice(8)));
      else {
        const { isPromote: _, ...m } = decodeMember(v);
        this.members.set(m.id, m);
      }
    }
    for (const [k] of records.membersRemoved) this.removed.add(BigInt("0x" + k.toString()));
    for (const [k, v] of records.cluster) if (k.equals(CLUSTER_VERSION_KEY)) this.clusterVersion = v.toString();
    for (const id of this.removed) this.members.delete(id);
    this.v2Store = new V2Store();
    this.rebuildV2Store();
  }

  /**
   * Takes the membership from a v2 store JSON as of raft index `index` (a leader's snapshot whose
   * image lacks ours), as etcd 3.4's applySnapshot does, and keeps that store's image in `w`. The backend's member
   * records stay what the leader's image holds, as in etcd.
   * @throws Error when the JSON is not a v2 store or its members do not parse.
   */
  recoverFromV2Store(json: Uint8Array, index: number, w: WriteSession): void {
    const store = new V2Store();
    store.recover(json);
    this.adopt(store);
    this.v2Index = index;
    this.stageV2Store(w);
  }

  /** etcd 3.4's RaftCluster.Recover: members, removed IDs and version from the v2 store. */
  private adopt(store: V2Store): void {
    const members = new Map<bigint, MemberRecord>();
    const removed = new Set<bigint>();
    for (const n of childrenOf(store, MEMBERS_PREFIX)) {
      const id = BigInt("0x" + n.key!.slice(MEMBERS_PREFIX.length + 1));
      const m: MemberRecord = { id, name: "", peerUrls: [], clientUrls: [], isLearner: false };
      let raft = false;
      for (const c of n.nodes ?? []) {
        const leaf = c.key!.slice(n.key!.length + 1);
        if (leaf === "raftAttributes") {
          const j = JSON.parse(c.value ?? "{}") as { peerURLs?: string[] | null; isLearner?: boolean };
          m.peerUrls = j.peerURLs ?? [];
          m.isLearner = j.isLearner ?? false;
          raft = true;
        } else if (leaf === "attributes") {
          const j = JSON.parse(c.value ?? "{}") as { name?: string; clientURLs?: string[] | null };
          m.name = j.name ?? "";
          m.clientUrls = j.clientURLs ?? [];
        } else throw new Error(`unknown key ${c.key} in the v2 store's members`);
      }
      if (!raft) throw new Error(`member ${hexId(id)} has no raftAttributes in the v2 store`);
      members.set(id, m);
    }
    for (const n of childrenOf(store, REMOVED_PREFIX)) removed.add(BigInt("0x" + n.key!.slice(REMOVED_PREFIX.length + 1)));
    let version = "";
    try {
      version = store.get(VERSION_KEY).node.value ?? "";
    } catch (e) {
      if (!(e instanceof V2Error) || e.errorCode !== V2ErrorCode.KeyNotFound) throw e;
    }
    this.members.clear();
    this.removed.clear();
    this.changeCount++;
    for (const m of members.values()) this.members.set(m.id, m);
    for (const id of removed) this.removed.add(id);
    this.clusterVersion = version;
    this.v2Store = store;
  }

  list(): MemberRecord[] {
    return [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: bigint): MemberRecord | undefined {
    return this.members.get(id);
  }

  /** Moves on every change to the members or their attributes: a view computed at one count holds until it moves. */
  get changes(): number {
    return this.changeCount;
  }

  isRemoved(id: bigint): boolean {
    return this.removed.has(id);
  }

  /** etcd's AddMember: raftAttributes into the v2 store, the whole member into the backend. */
  add(m: MemberRecord, w: WriteSession): void {
    this.changeCount++;
    this.members.set(m.id, m);
    this.v2Store.create(`${MEMBERS_PREFIX}/${hexId(m.id)}/raftAttributes`, false, encodeRaftAttributes(m.peerUrls, m.isLearner));
    w.stage("members", memberKey(m.id), encodeMember(m));
    this.stageV2Store(w);
  }

  remove(id: bigint, w: WriteSession): void {
    this.changeCount++;
    this.members.delete(id);
    this.removed.add(id);
    try {
      this.v2Store.delete(`${MEMBERS_PREFIX}/${hexId(id)}`, true, true);
    } catch (e) {
      if (!(e instanceof V2Error) || e.errorCode !== V2ErrorCode.KeyNotFound) throw e;
    }
    this.v2Store.create(`${REMOVED_PREFIX}/${hexId(id)}`, false, "");
    w.stage("members", memberKey(id), undefined);
    w.stage("membersRemoved", memberKey(id), Buffer.from("removed"));
    this.stageV2Store(w);
  }

  /** etcd's UpdateAttributes; a removed member's are skipped. @throws Error for a member never known (etcd panics). */
  setAttributes(id: bigint, name: string, clientUrls: string[], w: WriteSession): void {
    const m = this.members.get(id);
    if (m === undefined) {
      if (this.removed.has(id)) return;
      throw new Error(`attributes of unknown member ${hexId(id)}`);
    }
    m.name = name;
    m.clientUrls = clientUrls;
    this.v2Store.set(`${MEMBERS_PREFIX}/${hexId(id)}/attributes`, false, encodeAttributes(name, clientUrls));
    w.stage("members", memberKey(id), encodeMember(m));
    this.stageV2Store(w);
  }

  /** Replaces a member's raft attributes (peer URLs and learner flag), as etcd's update does. */
  setRaftAttributes(id: bigint, peerUrls: string[], isLearner: boolean, w: WriteSession): void {
    const m = this.members.get(id);
    if (m === undefined) return;
    m.peerUrls = peerUrls;
    m.isLearner = isLearner;
    this.changeCount++;
    this.updateRaftAttributes(m, w);
  }

  promote(id: bigint, w: WriteSession): void {
    const m = this.members.get(id);
    if (m === undefined) return;
    m.isLearner = false;
    this.changeCount++;
    this.updateRaftAttributes(m, w);
  }

  setClusterVersion(version: string, w: WriteSession): void {
    this.clusterVersion = version;
    this.v2Store.set(VERSION_KEY, false, version);
    w.stage("cluster", CLUSTER_VERSION_KEY, Buffer.from(version));
    w.stage("members", CLUSTER_VERSION_KEY, undefined); // the record's place before etcd's layout
    this.stageV2Store(w);
  }

  /**
   * An image without its index (saved on every v2 write before the index was kept) is as of the
   * consistent index it was loaded at, and stays so only until the next v2 write, which no longer
   * saves it: that index is written at once, in a batch of its own.
   * @returns the batch's write (its failure is the backend's: the member must stop), or undefined
   *   when the image `load` took had its index.
   */
  writeLoadedImageIndex(store: Pick<StorePort, "beginWrite" | "consistentIndex">): Promise<void> | undefined {
    if (!this.loadedImageUnstamped) return undefined;
    this.loadedImageUnstamped = false;
    const w = store.beginWrite();
    w.stageLatest(V2_STORE_INDEX_META_KEY, encodeUint64(this.v2Index));
    return w.commit(store.consistentIndex());
  }

  /** Stages the v2 store's image, as of `v2Index` (after a change of the membership). */
  private stageV2Store(w: WriteSession): void {
    // Saved whole (its nodes and its event history): of a group of batches written together,
    // LevelDB gets only the last one's.
    w.stageLatest(V2_STORE_META_KEY, this.v2Store.save());
    w.stageLatest(V2_STORE_INDEX_META_KEY, encodeUint64(this.v2Index));
    this.loadedImageUnstamped = false;
  }

  private updateRaftAttributes(m: MemberRecord, w: WriteSession): void {
    this.v2Store.update(`${MEMBERS_PREFIX}/${hexId(m.id)}/raftAttributes`, encodeRaftAttributes(m.peerUrls, m.isLearner));
    w.stage("members", memberKey(m.id), encodeMember(m));
    this.stageV2Store(w);
  }

  /** The v2 store etcd 3.4 would hold for these members (records written before the v2 store was kept). */
  private rebuildV2Store(): void {
    for (const m of this.list()) {
      this.v2Store.create(`${MEMBERS_PREFIX}/${hexId(m.id)}/raftAttributes`, false, encodeRaftAttributes(m.peerUrls, m.isLearner));
      if (m.name !== "" || m.clientUrls.length > 0) this.v2Store.set(`${MEMBERS_PREFIX}/${hexId(m.id)}/attributes`, false, encodeAttributes(m.name, m.clientUrls));
    }
    for (const id of this.removed) this.v2Store.create(`${REMOVED_PREFIX}/${hexId(id)}`, false, "");
    if (this.clusterVersion !== "") this.v2Store.set(VERSION_KEY, false, this.clusterVersion);
  }
}

/** Whether raft snapshot data is a v2 store JSON (etcd's) rather than `{"clusterVersion":..}` (older etcd-ts data dirs). */
export function isV2StoreJson(data: Uint8Array): boolean {
  const head = Buffer.from(data.subarray(0, 16)).toString();
  return /^\s*\{\s*"Root"/.test(head);
}

function childrenOf(store: V2Store, dir: string): { key?: string; value?: string; nodes?: { key?: string; value?: string }[] }[] {
  try {
    return store.get(dir, true, true).node.nodes ?? [];
  } catch (e) {
    if (e instanceof V2Error && e.errorCode === V2ErrorCode.KeyNotFound) return [];
    throw e;
  }
}

/** Reads the records `Membership.load` takes from the backend. */
export async function loadMembershipRecords(store: Pick<StorePort, "loadRecords">): Promise<MembershipRecords> {
  const meta = await store.loadRecords("meta");
  const index = meta.find(([k]) => k.equals(V2_STORE_INDEX_META_KEY))?.[1];
  return {
    members: await store.loadRecords("members"),
    membersRemoved: await store.loadRecords("membersRemoved"),
    cluster: await store.loadRecords("cluster"),
    v2Store: meta.find(([k]) => k.equals(V2_STORE_META_KEY))?.[1],
    v2StoreIndex: index === undefined ? undefined : decodeUint64(index),
  };
}
