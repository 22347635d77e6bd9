/**
 * The cluster's members as the apply loop sees them: added and removed by conf-change entries,
 * named by member-attribute entries, persisted as JSON records in the backend's "members"
 * bucket in the same batch as the entry that changed them.
 */
import type { WriteSession } from "../store-port.js";

export interface MemberRecord {
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

/** The JSON etcd puts in a conf change's context and in its member records. */
interface MemberJson {
  id: string;
  name?: string;
  peerURLs: string[];
  clientURLs?: string[];
  isLearner?: boolean;
}

export function encodeMember(m: MemberRecord): Buffer {
  const json: MemberJson = {
    id: m.id.toString(16),
    name: m.name,
    peerURLs: m.peerUrls,
    clientURLs: m.clientUrls,
    isLearner: m.isLearner,
  };
  return Buffer.from(JSON.stringify(json));
}

/** @throws Error on a malformed record (a broken invariant: we wrote it). */
export function decodeMember(data: Uint8Array): MemberRecord {
  const json = JSON.parse(Buffer.from(data).toString()) as MemberJson;
  return {
    id: BigInt("0x" + json.id),
    name: json.name ?? "",
    peerUrls: json.peerURLs ?? [],
    clientUrls: json.clientURLs ?? [],
    isLearner: json.isLearner ?? false,
  };
}

function memberKey(id: bigint): Buffer {
  return Buffer.from(id.toString(16));
}

export class Membership {
  private readonly members = new Map<bigint, MemberRecord>();
  private readonly removed = new Set<bigint>();
  clusterVersion = "";

  constructor(readonly clusterId: bigint) {}

  /** Replaces the members with persisted records (start-up, or after a snapshot is installed). */
  load(records: [Buffer, Buffer][]): void {
    this.members.clear();
    this.removed.clear();
    this.clusterVersion = "";
    for (const [k, v] of records) {
      const key = k.toString();
      if (key === "clusterVersion") {
        this.clusterVersion = v.toString();
      } else if (key.startsWith("removed/")) {
        this.removed.add(BigInt("0x" + key.slice(8)));
      } else {
        const m = decodeMember(v);
        this.members.set(m.id, m);
      }
    }
  }

  list(): MemberRecord[] {
    return [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: bigint): MemberRecord | undefined {
    return this.members.get(id);
  }

  isRemoved(id: bigint): boolean {
    return this.removed.has(id);
  }

  add(m: MemberRecord, w: WriteSession): void {
    this.members.set(m.id, m);
    w.stage("members", memberKey(m.id), encodeMember(m));
  }

  remove(id: bigint, w: WriteSession): void {
    this.members.delete(id);
    this.removed.add(id);
    w.stage("members", memberKey(id), undefined);
    w.stage("members", Buffer.from("removed/" + id.toString(16)), Buffer.from("1"));
  }

  setAttributes(id: bigint, name: string, clientUrls: string[], w: WriteSession): void {
    const m = this.members.get(id);
    if (m === undefined) return; // removed meanwhile: nothing to name
    m.name = name;
    m.clientUrls = clientUrls;
    w.stage("members", memberKey(id), encodeMember(m));
  }

  /** Replaces a member's raft attributes (peer URLs and learner flag), as etcd's update does. */
  setRaftAttributes(id: bigint, peerUrls: string[], isLearner: boolean, w: WriteSession): void {
    const m = this.members.get(id);
    if (m === undefined) return;
    m.peerUrls = peerUrls;
    m.isLearner = isLearner;
    w.stage("members", memberKey(id), encodeMember(m));
  }

  promote(id: bigint, w: WriteSession): void {
    const m = this.members.get(id);
    if (m === undefined) return;
    m.isLearner = false;
    w.stage("members", memberKey(id), encodeMember(m));
  }

  setClusterVersion(version: string, w: WriteSession): void {
    this.clusterVersion = version;
    w.stage("members", Buffer.from("clusterVersion"), Buffer.from(version));
  }
}
