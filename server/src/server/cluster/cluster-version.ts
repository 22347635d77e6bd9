/**
 * The cluster version as etcd 3.4's leader decides it (decideClusterVersion): the lowest server
 * version among the members, cut to major.minor; unknown while any member's version is unknown
 * (it cannot be asked, or answers something that is not a version). This member's own version is
 * known without asking. The leader proposes the decision when the cluster has no version yet
 * ("3.0.0", etcd's minimum, when undecided) and whenever the decision is above the current one.
 */
import type { MemberRecord } from "./membership.js";

/** A member's versions, as its peer port's /version reports them. */
export interface PeerVersion {
  /** "etcdserver": e.g. "3.4.23". */
  server: string;
  /** "etcdcluster": e.g. "3.4.0", or "not_decided". */
  cluster: string;
}

/** How the member asks another member for its versions (owned here; production: HTTP). */
export interface PeerVersions {
  /** Resolves undefined when the member cannot be asked or answers nothing usable; never rejects. */
  fetch(member: MemberRecord): Promise<PeerVersion | undefined>;
}

/** etcd's minimum cluster version: what a leader sets when it cannot decide. */
export const MIN_CLUSTER_VERSION = "3.0.0";

interface SemVer {
  major: number;
  minor: number;
  patch: number;
}

/** Parses "X.Y.Z" with an optional "-pre"/"+build" suffix; undefined when it is not one. */
export function parseVersion(v: string): SemVer | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(v);
  return m === null ? undefined : { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
}

export function compareVersions(a: SemVer, b: SemVer): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/**
 * The decided cluster version ("3.4.0"), or undefined while any member's is unknown.
 * @param localServerVersion this member's server version (e.g. "3.4.23").
 */
export async function decideClusterVersion(members: MemberRecord[], localId: bigint, localServerVersion: string, peers: PeerVersions): Promise<string | undefined> {
  const versions = await Promise.all(
    members.map((m) => (m.id === localId ? Promise.resolve<PeerVersion | undefined>({ server: localServerVersion, cluster: "" }) : peers.fetch(m))),
  );
  let lowest: SemVer | undefined;
  for (const v of versions) {
    const parsed = v === undefined ? undefined : parseVersion(v.server);
    if (parsed === undefined) return undefined;
    if (lowest === undefined || compareVersions(parsed, lowest) < 0) lowest = parsed;
  }
  return lowest === undefined ? undefined : `${lowest.major}.${lowest.minor}.0`;
}

export interface HttpPeerVersionsOptions {
  /** Per request (etcd: the peer round-trip timeout). */
  timeoutMs: number;
  /** Answers larger than this are refused. */
  maxBodyBytes?: number;
}

/**
 * Production PeerVersions: GET `<peerURL>/version` on each of the member's peer URLs in turn
 * until one answers `{"etcdserver":..,"etcdcluster":..}`. Plain HTTP(S) with Node's fetch; peer
 * TLS client certificates are not presented (a TLS peer port that requires them answers nothing).
 */
export class HttpPeerVersions implements PeerVersions {
  constructor(private readonly options: HttpPeerVersionsOptions) {}

  async fetch(member: MemberRecord): Promise<PeerVersion | undefined> {
    const maxBody = this.options.maxBodyBytes ?? 64 * 1024;
    for (const url of member.peerUrls) {
      try {
        const resp = await fetch(new URL("/version", url), { signal: AbortSignal.timeout(this.options.timeoutMs) });
        if (!resp.ok) continue;
        const text = await resp.text();
        if (text.length > maxBody) continue;
        const json = JSON.parse(text) as { etcdserver?: unknown; etcdcluster?: unknown };
        if (typeof json.etcdserver !== "string") continue;
        return { server: json.etcdserver, cluster: typeof json.etcdcluster === "string" ? json.etcdcluster : "" };
      } catch {
        // unreachable or not etcd: try the next URL
      }
    }
    return undefined;
  }
}

/** Every member reports `serverVersion` (members of one build in one process: the simulation, tests). */
export function uniformPeerVersions(serverVersion: string): PeerVersions {
  return { fetch: () => Promise.resolve({ server: serverVersion, cluster: "" }) };
}
