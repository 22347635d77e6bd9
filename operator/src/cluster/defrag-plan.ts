/**
 * Defragmentation by rule and the NOSPACE alarm (pure). Called by plan() once membership is
 * settled and nothing is left to roll:
 *
 * - a member is due when its database is larger than spec.defrag.dbSizeThreshold, or when the
 *   free share of it ((dbSize - dbSizeInUse) / dbSize) is at least fragmentationPercent, and it
 *   was not defragmented within `cooldownMs` (so a database that stays large is not defragmented
 *   on every pass; the size rule does not ask for free space, since dbSizeInUse is an estimate);
 *   or when spec.defrag.schedule's latest slot is newer than its last defragmentation;
 * - only while the cluster is healthy: every member answers, every pod is ready, a leader is
 *   known and every member is caught up (the rolling gate);
 * - one member per pass, followers first (highest ordinal first), the leader last;
 * - a raised NOSPACE alarm gets etcd's remedy (compaction is the user's): every member is
 *   defragmented once for it, whatever the rules say, and the alarm is disarmed once that is done
 *   and every member's database is below the quota (spec.options quota-backend-bytes, etcd's
 *   2 GiB default). "Below the quota" alone is not enough: etcd refuses a write when the file's
 *   size plus the write's cost exceeds the quota, and bbolt grows its file only as far as it
 *   needs, so the alarm is often raised while every file is still below the quota; disarming
 *   then, with nothing given back, lets the next write raise it again. The alarm's first
 *   sighting is kept in status.defrag.nospaceSince; a member defragmented since then is done for
 *   this alarm, and one still at the quota after that is defragmented again once per cool-down.
 */
import { memberOrdinal } from "./naming.js";
import type { EtcdMemberEntry, EtcdMemberStatus, ObservedCluster } from "./observed.js";

export type DefragReason = "size" | "fragmentation" | "schedule" | "nospace";

export type DefragStep =
  | { kind: "defragment"; member: string; id: string; reason: DefragReason }
  | { kind: "disarm-alarm"; memberId: string; alarm: "NOSPACE" };

export interface DefragPlanOptions {
  /** A member is not defragmented by a size or fragmentation rule (or again for one NOSPACE alarm) within this long. */
  cooldownMs: number;
}

export const DEFAULT_DEFRAG_COOLDOWN_MS = 10 * 60_000;
/** etcd's default backend quota (quota-backend-bytes 0 or unset). */
export const DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;

const SUFFIX: Record<string, number> = {
  "": 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes quantity of bytes ("100Mi", "1.5G", "2048") as a number; undefined when malformed. */
export function parseQuantity(q: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]+)?)([EPTGMK]i?|[kM]|)$/.exec(q.trim());
  if (m === null) return undefined;
  const unit = SUFFIX[m[2]!];
  return unit === undefined ? undefined : Math.floor(Number(m[1]) * unit);
}

/** The backend quota the members run with. */
export function quotaBytes(obs: ObservedCluster): number {
  const v = Number(obs.spec.options?.["quota-backend-bytes"] ?? "0");
  return Number.isFinite(v) && v > 0 ? v : DEFAULT_QUOTA_BYTES;
}

/** The last defragmentation of a member the status records (ms), or undefined. */
export function lastDefragOf(obs: ObservedCluster, member: string): number | undefined {
  const t = obs.previousStatus.members?.find((m) => m.name === member)?.lastDefragTime;
  const ms = t === undefined ? NaN : Date.parse(t);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * When the raised NOSPACE alarm was first seen (ms): status.defrag.nospaceSince, or now on the
 * pass that first sees it. Undefined while no NOSPACE alarm is raised.
 */
export function nospaceSince(obs: ObservedCluster): number | undefined {
  if (!nospaceRaised(obs)) return undefined;
  const t = Date.parse(obs.previousStatus.defrag?.nospaceSince ?? "");
  return Number.isFinite(t) ? t : obs.now;
}

/** Why a member is due for defragmentation, or undefined. */
export function defragReason(obs: ObservedCluster, member: string, st: EtcdMemberStatus, opts: DefragPlanOptions): DefragReason | undefined {
  const last = lastDefragOf(obs, member);
  const free = st.dbSize - st.dbSizeInUse;
  const cooled = last === undefined || obs.now - last >= opts.cooldownMs;
  // Under NOSPACE: once for the alarm; again once per cool-down while still at the quota.
  const since = nospaceSince(obs);
  if (since !== undefined && (last === undefined || last < since || (st.dbSize >= quotaBytes(obs) && cooled))) return "nospace";
  const rules = obs.spec.defrag;
  if (rules === undefined) return undefined;
  if (rules.schedule && obs.defragSlot !== undefined && (last ?? 0) < obs.defragSlot) return "schedule";
  if (!cooled) return undefined;
  const threshold = rules.dbSizeThreshold ? parseQuantity(rules.dbSizeThreshold) : undefined;
  if (threshold !== undefined && st.dbSize > threshold) return "size";
  const pct = rules.fragmentationPercent;
  if (pct !== undefined && st.dbSize > 0 && (free * 100) / st.dbSize >= pct) return "fragmentation";
  return undefined;
}

function nospaceRaised(obs: ObservedCluster): boolean {
  return (obs.etcd.alarms ?? []).some((a) => a.alarm === "NOSPACE");
}

/**
 * The defragmentation or alarm step for a settled, healthy cluster (the caller checked the
 * gate), or undefined. `members` are the cluster's members with their names; `leaderId` the
 * leader's ID.
 */
export function planDefrag(obs: ObservedCluster, members: { m: EtcdMemberEntry; name: string }[], leaderId: string, opts: DefragPlanOptions): DefragStep | undefined {
  const quota = quotaBytes(obs);
  const due = members
    .map((x) => ({ ...x, reason: defragReason(obs, x.name, obs.etcd.statuses.get(x.name)!, opts) }))
    .filter((x): x is typeof x & { reason: DefragReason } => x.reason !== undefined);
  const nospace = (obs.etcd.alarms ?? []).filter((a) => a.alarm === "NOSPACE");
  if (nospace.length > 0 && !due.some((x) => x.reason === "nospace")) {
    const allBelow = members.every((x) => (obs.etcd.statuses.get(x.name)?.dbSize ?? Infinity) < quota);
    if (allBelow) return { kind: "disarm-alarm", memberId: nospace[0]!.memberId, alarm: "NOSPACE" };
  }
  if (due.length === 0) return undefined;
  const ord = (n: string) => memberOrdinal(obs.name, n) ?? Number.MAX_SAFE_INTEGER;
  const followers = due.filter((x) => x.m.id !== leaderId).sort((a, b) => ord(b.name) - ord(a.name));
  const pick = followers[0] ?? due[0]!;
  return { kind: "defragment", member: pick.name, id: pick.m.id, reason: pick.reason };
}

/**
 * The schedule slot that every member has been defragmented for (for status.defrag), or
 * undefined: `lastDefrag` are the members' last defragmentations (ms).
 */
export function scheduleDone(slot: number | undefined, lastDefrag: (number | undefined)[]): number | undefined {
  if (slot === undefined || lastDefrag.length === 0) return undefined;
  return lastDefrag.every((t) => t !== undefined && t >= slot) ? slot : undefined;
}
