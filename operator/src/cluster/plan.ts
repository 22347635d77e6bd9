/**
 * The decision: observed state in, the one next step out. Pure (no I/O, no clock), so every rule
 * is unit-tested (operator/test/plan.test.ts). Membership follows etcd's member list, never pod
 * lifecycle: a missing pod is restarted as the same member while its data survives; a member
 * whose data is gone (its PVC, or with memory storage its pod) is removed and re-added as a
 * learner under the same name. Membership changes happen one at a time and only while every
 * member answers: scale out learner-first (add, start, promote), scale in from the highest
 * ordinal (leadership moved away first). A changed pod-relevant spec (image, options, pod
 * template, TLS) rolls one member at a time once membership is settled: the member's pod is
 * deleted and recreated on its volume (same identity and data), only while every member answers,
 * is ready and has caught up with the leader, followers first and the leader last (leadership
 * moved to an updated member first); spec.version is checked against what members run.
 */
import {
  ANN_FORCE_NEW_CLUSTER,
  ANN_INITIAL_CLUSTER,
  ANN_INITIAL_STATE,
  ANN_MEMBER_ID,
  ANN_SPEC_HASH,
  memberFromPeerURL,
  memberName,
  memberOrdinal,
  peerURL,
} from "./naming.js";
import type { EtcdMemberEntry, EtcdMemberStatus, ObservedCluster, ObservedVolume } from "./observed.js";
import { DEFAULT_DEFRAG_COOLDOWN_MS, type DefragStep, planDefrag } from "./defrag-plan.js";
import { TLS_FLAGS, tlsSettings } from "./tls-layout.js";
import { type VersionRefusalReason, sameMinor, versionRefusal } from "./version-path.js";

/** Flags the operator sets on every member; `spec.options` may not name them. */
export const RESERVED_OPTIONS = new Set([
  "name",
  "data-dir",
  "wal-dir",
  "listen-peer-urls",
  "listen-client-urls",
  "advertise-client-urls",
  "initial-advertise-peer-urls",
  "initial-cluster",
  "initial-cluster-state",
  "initial-cluster-token",
  "discovery-srv",
  "discovery",
  "force-new-cluster",
]);

export type Step =
  /** A new cluster: a volume and a pod per member, all started with --initial-cluster-state new. */
  | { kind: "bootstrap"; members: string[]; initialCluster: string }
  /** (Re)start a member's pod from what its volume records; the member keeps its identity and data. */
  | { kind: "create-pod"; member: string; initialCluster: string; state: "new" | "existing"; memberId?: string; forceNewCluster?: boolean }
  /** Add the member as a learner, then create its volume and pod (state existing). */
  | { kind: "add-learner"; member: string; peerURL: string }
  | { kind: "promote"; member: string; id: string }
  /** MoveLeader; `reason` "roll" when it clears the way for rolling the leader's pod. */
  | { kind: "move-leader"; from: string; to: string; toId: string; reason?: "roll" }
  /** Delete a member's pod whose spec hash is out of date; it is recreated on its volume (create-pod). */
  | { kind: "roll-member"; member: string; id: string; fromHash: string; toHash: string }
  /** A spec change the operator will not roll out (the version path); reported, nothing done. */
  | { kind: "refused"; reason: VersionRefusalReason | "VersionMismatch"; message: string }
  /** member remove, then delete the member's pod and volume. */
  | { kind: "remove-member"; member: string; id: string; reason: "scale-in" | "repair" | "failed-join" | "corrupt"; detail?: string }
  /** Clear an alarm no member's data justifies any more (CORRUPT once every member's hash agrees). */
  | { kind: "disarm-alarm"; memberId: string; alarm: "CORRUPT" }
  /**
   * Permanent loss of quorum (fewer than a majority of voters have their data), not acted on
   * (recovery off, or its threshold not reached, or nothing to recover from): reported only.
   */
  | { kind: "quorum-lost"; lost: string[]; message: string }
  /** Recovery: record on `member`'s volume that it restarts once with --force-new-cluster, and delete its pod. */
  | { kind: "force-new-cluster"; member: string; id: string; lost: string[] }
  /** The forced member serves alone: clear the record and replace its pod by a normal one (no flag). */
  | { kind: "finish-force-new-cluster"; member: string }
  /** Recovery: delete every member's pod and volume; the cluster is bootstrapped again from `backupName`. */
  | { kind: "recover-from-backup"; backupName: string; lost: string[] }
  | { kind: "delete-pod"; member: string; reason: string }
  | { kind: "delete-volume"; member: string; reason: string }
  /** Record on a bootstrap member's volume which etcd member its data belongs to. */
  | { kind: "record-member-id"; member: string; id: string }
  /** Auth on, in etcd's order: user root (the Secret's password), role root granted, auth enable. */
  | { kind: "enable-auth" }
  | { kind: "disable-auth" }
  /** Defragment one member, or disarm a NOSPACE alarm (defrag-plan.ts). */
  | DefragStep
  | { kind: "wait"; reason: string; message: string }
  | { kind: "invalid-spec"; message: string }
  | { kind: "paused" }
  | { kind: "steady" };

export interface PlanOptions {
  clusterDomain: string;
  /** A member added but not started this long after its pod was created is removed (and re-added). */
  joinTimeoutMs?: number;
  /** See DefragPlanOptions.cooldownMs (default DEFAULT_DEFRAG_COOLDOWN_MS). */
  defragCooldownMs?: number;
}

export const DEFAULT_JOIN_TIMEOUT_MS = 5 * 60_000;

/**
 * A voter counts as caught up for rolling when its applied index is at most this far behind the
 * leader's raft index (both read within one pass, so a busy cluster is never exactly level).
 */
export const ROLL_MAX_LAG = 1000;

export function quorum(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

/** Problems with a spec that the schema cannot express; empty when it is fine. */
export function specProblems(obs: ObservedCluster): string[] {
  const problems: string[] = [];
  const tls = tlsSettings(obs.spec);
  for (const key of Object.keys(obs.spec.options ?? {})) {
    if (RESERVED_OPTIONS.has(key)) problems.push(`spec.options.${key} is set by the operator`);
    else if ((tls.client || tls.peer) && TLS_FLAGS.includes(key)) problems.push(`spec.options.${key} is set by the operator from spec.tls`);
  }
  if (!Number.isInteger(obs.spec.size) || obs.spec.size < 1) problems.push("spec.size must be at least 1");
  // etcd 3.4 (and etcd-ts, which follows it) builds a --discovery-srv cluster from the
  // _etcd-server-ssl records only: DNS SRV bootstrap needs https peers.
  if (obs.spec.bootstrap?.discovery === "DNSSRV" && !tls.peer) {
    problems.push("spec.bootstrap.discovery DNSSRV needs peer TLS (spec.tls.peer): etcd 3.4 discovers only _etcd-server-ssl records");
  }
  // Peer URLs are members' identities in etcd's list: turning peer TLS on or off under a running
  // cluster would need every member's peer URLs updated while they switch; not done.
  const wantScheme = tls.peer ? "https:" : "http:";
  const other = (obs.etcd.members ?? []).filter((m) => m.peerURLs.some((u) => !u.startsWith(wantScheme)));
  if (other.length > 0) {
    problems.push(`spec.tls.peer cannot change on a running cluster: members ${other.map((m) => m.name || m.id).join(", ")} have ${tls.peer ? "http" : "https"} peer URLs`);
  }
  return problems;
}

/** Whether members' peer URLs are https. */
export function peerTls(obs: ObservedCluster): boolean {
  return tlsSettings(obs.spec).peer !== undefined;
}

function isMemory(obs: ObservedCluster): boolean {
  return obs.spec.storage?.medium === "Memory";
}

/** The record of a member's data: its PVC, or with memory storage its pod. */
function dataOf(obs: ObservedCluster, member: string): ObservedVolume | undefined {
  if (isMemory(obs)) return obs.pods.get(member);
  return obs.volumes.get(member);
}

/** The name a member of etcd's list has in this cluster (its published name, or its peer URL's host). */
export function nameOf(obs: ObservedCluster, m: EtcdMemberEntry): string | undefined {
  if (m.name !== "") return m.name;
  for (const url of m.peerURLs) {
    const n = memberFromPeerURL(obs, url);
    if (n !== undefined) return n;
  }
  return undefined;
}

function ordinalOf(obs: ObservedCluster, name: string): number {
  return memberOrdinal(obs.name, name) ?? Number.MAX_SAFE_INTEGER;
}

export function initialClusterOf(obs: ObservedCluster, names: string[], opts: PlanOptions): string {
  return names.map((n) => `${n}=${peerURL(obs, n, opts.clusterDomain, peerTls(obs))}`).join(",");
}

export function plan(obs: ObservedCluster, opts: PlanOptions): Step {
  const problems = specProblems(obs);
  if (problems.length > 0) return { kind: "invalid-spec", message: problems.join("; ") };
  if (obs.spec.paused === true) return { kind: "paused" };
  if (obs.tlsProblem !== undefined) return { kind: "wait", reason: "TLSNotReady", message: obs.tlsProblem };

  const forced = forcedMember(obs);
  if (forced !== undefined) return planForced(obs, forced, opts);

  const members = obs.etcd.members;
  if (members === undefined) return planWithoutMemberList(obs, opts);

  const loss = quorumLossOf(obs);
  if (loss !== undefined) return planQuorumLoss(obs, loss, opts);

  const named = members.map((m) => ({ m, name: nameOf(obs, m) }));
  const inList = new Set(named.flatMap((x) => (x.name === undefined ? [] : [x.name])));
  const voters = members.filter((m) => !m.isLearner);
  const healthyVoters = named.filter((x) => !x.m.isLearner && x.name !== undefined && obs.etcd.statuses.has(x.name));

  // 1. Repair: a member whose data is gone or corrupt is removed (re-added later as a learner),
  // one at a time and only while the others keep quorum.
  const corrupt = corruptMembers(obs);
  for (const { m, name } of named) {
    if (name === undefined) continue;
    const lost = dataLost(obs, name, m.id);
    const damaged = corrupt.get(name);
    if (!lost && damaged === undefined) continue;
    if (!m.isLearner) {
      const healthyAfter = healthyVoters.filter((x) => x.m.id !== m.id).length;
      if (healthyAfter < quorum(voters.length - 1)) {
        const what = lost ? "lost its data" : `has corrupt data (${damaged})`;
        return { kind: "wait", reason: "QuorumAtRisk", message: `member ${name} ${what}, but removing it would leave no quorum` };
      }
    }
    if (lost) return { kind: "remove-member", member: name, id: m.id, reason: "repair" };
    return { kind: "remove-member", member: name, id: m.id, reason: "corrupt", detail: damaged };
  }
  // A CORRUPT alarm outlives the member it was about: disarmed once every member's hash agrees
  // (right after the corrupt member is removed, so writes resume before it is re-added).
  const corruptAlarm = obs.etcd.alarms?.find((a) => a.alarm === "CORRUPT");
  if (corruptAlarm !== undefined && obs.etcd.hashes !== undefined && corrupt.size === 0 && hashesAgree(obs)) {
    return { kind: "disarm-alarm", memberId: corruptAlarm.memberId, alarm: "CORRUPT" };
  }

  // 2. Restart: a member whose data survives but whose pod is gone comes back as itself.
  for (const { m, name } of named) {
    if (name === undefined || isMemory(obs)) continue;
    const pod = obs.pods.get(name);
    if (pod === undefined) {
      const data = obs.volumes.get(name)!;
      return {
        kind: "create-pod",
        member: name,
        initialCluster: data.annotations[ANN_INITIAL_CLUSTER] ?? initialClusterOf(obs, [...inList].sort(), opts),
        state: data.annotations[ANN_INITIAL_STATE] === "new" ? "new" : "existing",
        memberId: m.id,
      };
    }
  }

  // 3. Bootstrap members' volumes learn their member IDs once etcd knows them.
  if (!isMemory(obs)) {
    for (const { m, name } of named) {
      if (name === undefined) continue;
      const data = obs.volumes.get(name);
      if (data !== undefined && data.annotations[ANN_MEMBER_ID] === undefined) {
        return { kind: "record-member-id", member: name, id: m.id };
      }
    }
  }

  // 4. Garbage: pods and volumes of names that are not members (removed, or a failed add).
  for (const pod of [...obs.pods.values()].sort(byName)) {
    if (!inList.has(pod.name) && !pod.deleting) return { kind: "delete-pod", member: pod.name, reason: "not a member" };
  }
  for (const vol of [...obs.volumes.values()].sort(byName)) {
    if (!inList.has(vol.name) && !vol.deleting) return { kind: "delete-volume", member: vol.name, reason: "not a member" };
  }

  // 5. Every member must answer before membership changes.
  const silent = named.filter((x) => x.name === undefined || !obs.etcd.statuses.has(x.name));
  const learners = named.filter((x) => x.m.isLearner);
  const leaderStatus = leaderStatusOf(obs);
  for (const { m, name } of learners) {
    const st = name === undefined ? undefined : obs.etcd.statuses.get(name);
    if (name === undefined || m.name === "" || st === undefined) continue;
    if (leaderStatus !== undefined && st.raftAppliedIndex < leaderStatus.raftIndex * PROMOTE_FRACTION) {
      return { kind: "wait", reason: "LearnerCatchingUp", message: `learner ${name} at index ${st.raftAppliedIndex} of ${leaderStatus.raftIndex}` };
    }
    return { kind: "promote", member: name, id: m.id };
  }
  // A learner that never started (its pod cannot join) blocks every change: give it up, it is re-added.
  for (const { m, name } of learners) {
    if (name === undefined || m.name !== "") continue;
    const created = obs.pods.get(name)?.createdAt;
    if (created !== undefined && obs.now - created > (opts.joinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS)) {
      return { kind: "remove-member", member: name, id: m.id, reason: "failed-join" };
    }
  }
  if (silent.length > 0) {
    const names = silent.map((x) => x.name ?? x.m.id).join(", ");
    const reason = learners.length > 0 ? "LearnerStarting" : "MembersUnhealthy";
    return { kind: "wait", reason, message: `waiting for ${names} to answer` };
  }

  // 6. Scale.
  const size = obs.spec.size;
  if (members.length < size) {
    for (let i = 0; ; i++) {
      const name = memberName(obs.name, i);
      if (inList.has(name)) continue;
      if (obs.pods.has(name) || obs.volumes.has(name)) {
        return { kind: "wait", reason: "ObjectsTerminating", message: `waiting for the old pod and volume of ${name} to go` };
      }
      return { kind: "add-learner", member: name, peerURL: peerURL(obs, name, opts.clusterDomain, peerTls(obs)) };
    }
  }
  if (members.length > size) {
    const sorted = [...named].sort((a, b) => ordinalOf(obs, b.name!) - ordinalOf(obs, a.name!));
    const victim = sorted[0]!;
    const leaderId = obs.etcd.statuses.get(victim.name!)?.leaderId;
    if (victim.m.id === leaderId) {
      const to = sorted.filter((x) => !x.m.isLearner && x.m.id !== victim.m.id).at(-1);
      if (to !== undefined) return { kind: "move-leader", from: victim.name!, to: to.name!, toId: to.m.id };
    }
    return { kind: "remove-member", member: victim.name!, id: victim.m.id, reason: "scale-in" };
  }

  // 7. Roll: members whose pods run an old spec, one at a time.
  const settled = named as { m: EtcdMemberEntry; name: string }[];
  const roll = planRoll(obs, settled);
  if (roll !== undefined) return roll;

  // 8. Upkeep of a settled cluster: authentication as the spec says, defragmentation, alarms.
  return planUpkeep(obs, settled, opts) ?? { kind: "steady" };
}

/**
 * The gate before changing a settled cluster's pods or data (rolling, auth, defragmentation):
 * every pod ready, a leader, every member within ROLL_MAX_LAG of it. A wait step, or the leader.
 */
function healthGate(obs: ObservedCluster, named: { m: EtcdMemberEntry; name: string }[], what: string, reason: string): Step | EtcdMemberStatus {
  const notReady = named.filter((x) => obs.pods.get(x.name)?.ready !== true).map((x) => x.name);
  if (notReady.length > 0) return { kind: "wait", reason: `${reason}WaitingReady`, message: `${what} waits for ${notReady.join(", ")} to be ready` };
  const leader = leaderStatusOf(obs);
  if (leader === undefined) return { kind: "wait", reason: `${reason}WaitingLeader`, message: `${what} waits for a leader` };
  const behind = named.filter((x) => obs.etcd.statuses.get(x.name)!.raftAppliedIndex + ROLL_MAX_LAG < leader.raftIndex).map((x) => x.name);
  if (behind.length > 0) return { kind: "wait", reason: `${reason}WaitingCatchUp`, message: `${what} waits for ${behind.join(", ")} to catch up with the leader` };
  return leader;
}

function planUpkeep(obs: ObservedCluster, named: { m: EtcdMemberEntry; name: string }[], opts: PlanOptions): Step | undefined {
  const wantAuth = obs.spec.auth?.enabled === true;
  const creds = obs.authCredentials;
  if (wantAuth !== (obs.etcd.authEnabled === true) && (wantAuth || obs.etcd.authEnabled === true)) {
    if (creds?.ready !== true) return { kind: "wait", reason: "AuthNotReady", message: creds?.ready === false ? creds.problem : "no root credentials" };
    if (obs.etcd.authEnabled === undefined) return { kind: "wait", reason: "AuthUnknown", message: "no member told whether authentication is on" };
    const gate = healthGate(obs, named, "authentication", "Auth");
    if ("kind" in gate) return gate;
    return wantAuth ? { kind: "enable-auth" } : { kind: "disable-auth" };
  }
  if (obs.spec.defrag === undefined && !(obs.etcd.alarms ?? []).some((a) => a.alarm === "NOSPACE")) return undefined;
  const gate = healthGate(obs, named, "defragmentation", "Defrag");
  if ("kind" in gate) {
    // Waiting matters only when there is something to do.
    return planDefrag(obs, named, "", { cooldownMs: opts.defragCooldownMs ?? DEFAULT_DEFRAG_COOLDOWN_MS }) === undefined ? undefined : gate;
  }
  return planDefrag(obs, named, gate.id, { cooldownMs: opts.defragCooldownMs ?? DEFAULT_DEFRAG_COOLDOWN_MS });
}

/** The spec hash a member's pod was created from ("" when it has none). */
export function podHashOf(obs: ObservedCluster, member: string): string {
  return obs.pods.get(member)?.annotations[ANN_SPEC_HASH] ?? "";
}

/**
 * Called with membership settled (size reached, every member started, answering, no learner).
 * Order: followers from the highest ordinal down, the leader last; leadership moves to an
 * updated voter before the leader's pod goes. Gate before each: every pod ready, every member
 * within ROLL_MAX_LAG of the leader's index.
 */
function planRoll(obs: ObservedCluster, named: { m: EtcdMemberEntry; name: string }[]): Step | undefined {
  const want = obs.specHash;
  const target = obs.spec.version;
  const statuses = named.map((x) => obs.etcd.statuses.get(x.name)!);
  if (target !== undefined && target !== "") {
    const refusal = versionRefusal(
      statuses.map((st) => st.version),
      target,
    );
    if (refusal) return { kind: "refused", ...refusal };
    // A member already rolled to the new spec must run what spec.version says: otherwise the
    // image is not the version it was declared to be, and the roll stops there.
    const wrong = named.find((x) => want !== undefined && podHashOf(obs, x.name) === want && !sameMinor(obs.etcd.statuses.get(x.name)!.version, target));
    if (wrong) {
      const v = obs.etcd.statuses.get(wrong.name)!.version;
      return { kind: "refused", reason: "VersionMismatch", message: `${wrong.name} runs ${v} on the new spec, not spec.version ${target}: roll stopped` };
    }
  }
  if (want === undefined) return undefined;
  const outdated = named.filter((x) => podHashOf(obs, x.name) !== want);
  if (outdated.length === 0) return undefined;

  const gate = healthGate(obs, named, "rolling", "Roll");
  if ("kind" in gate) return gate;
  const leader = gate;

  const byOrdinalDesc = [...outdated].sort((a, b) => ordinalOf(obs, b.name) - ordinalOf(obs, a.name));
  const follower = byOrdinalDesc.find((x) => x.m.id !== leader.id);
  const pick = follower ?? byOrdinalDesc[0]!;
  if (pick.m.id === leader.id && named.length > 1) {
    // Only the leader is left: hand leadership to an updated voter (the lowest ordinal) first.
    const to = named.filter((x) => x.m.id !== leader.id && !x.m.isLearner).sort((a, b) => ordinalOf(obs, a.name) - ordinalOf(obs, b.name))[0];
    if (to !== undefined) return { kind: "move-leader", from: pick.name, to: to.name, toId: to.m.id, reason: "roll" };
  }
  return { kind: "roll-member", member: pick.name, id: pick.m.id, fromHash: podHashOf(obs, pick.name), toHash: want };
}

function planWithoutMemberList(obs: ObservedCluster, opts: PlanOptions): Step {
  const records = isMemory(obs) ? [...obs.pods.values()] : [...obs.volumes.values()];
  if (records.length === 0 && obs.pods.size === 0) {
    const names = Array.from({ length: obs.spec.size }, (_, i) => memberName(obs.name, i));
    return { kind: "bootstrap", members: names, initialCluster: initialClusterOf(obs, names, opts) };
  }
  if (!isMemory(obs)) {
    for (const vol of records.sort(byName)) {
      if (vol.deleting || obs.pods.has(vol.name)) continue;
      const state = vol.annotations[ANN_INITIAL_STATE] === "new" ? "new" : "existing";
      const initialCluster = vol.annotations[ANN_INITIAL_CLUSTER];
      if (initialCluster === undefined) continue;
      const memberId = vol.annotations[ANN_MEMBER_ID];
      return { kind: "create-pod", member: vol.name, initialCluster, state, ...(memberId ? { memberId } : {}) };
    }
  }
  return { kind: "wait", reason: "NoMemberList", message: "no member answers MemberList yet" };
}

/** Whether a member's data is gone: its PVC (with memory storage its pod) missing or deleting, or holding another member's data. */
function dataLost(obs: ObservedCluster, name: string, id: string): boolean {
  const data = dataOf(obs, name);
  return data === undefined || data.deleting || (data.annotations[ANN_MEMBER_ID] ?? id) !== id;
}

/** Texts a member's log ends with when it refuses its own data (etcd-ts's start-up checks, etcd's initial corruption check). */
export const CORRUPT_DATA_MESSAGES = [/the member's data is damaged/, /found data inconsistency with peers/, /checksum mismatch/, /crc mismatch/i];

/**
 * Members whose data is corrupt, with why: (a) a CORRUPT alarm is active and the member's HashKV
 * differs from what a quorum of voters agree on (etcd 3.4 raises CORRUPT for the whole cluster,
 * so the hashes tell which member), or an alarm names it; (b) it does not answer and its pod's
 * last termination message says its data failed the start-up checks.
 */
export function corruptMembers(obs: ObservedCluster): Map<string, string> {
  const out = new Map<string, string>();
  const members = obs.etcd.members ?? [];
  const corruptAlarms = (obs.etcd.alarms ?? []).filter((a) => a.alarm === "CORRUPT");
  for (const a of corruptAlarms) {
    const m = members.find((x) => x.id === a.memberId);
    const n = m === undefined ? undefined : nameOf(obs, m);
    if (n !== undefined) out.set(n, "CORRUPT alarm");
  }
  if (corruptAlarms.length > 0 && obs.etcd.hashes !== undefined) {
    const voters = members.filter((m) => !m.isLearner).length;
    const groups = new Map<string, string[]>();
    for (const [name, h] of obs.etcd.hashes) {
      const key = `${h.revision}/${h.compactRevision}/${h.hash}`;
      groups.set(key, [...(groups.get(key) ?? []), name]);
    }
    const majority = [...groups.entries()].find(([, names]) => names.length >= quorum(voters));
    if (majority !== undefined) {
      const [key] = majority;
      for (const [name, h] of obs.etcd.hashes) {
        if (`${h.revision}/${h.compactRevision}/${h.hash}` !== key) out.set(name, `hash ${h.hash} at revision ${h.revision}, a quorum has ${key.split("/")[2]}`);
      }
    }
  }
  for (const m of members) {
    const n = nameOf(obs, m);
    if (n === undefined || obs.etcd.statuses.has(n)) continue;
    const msg = obs.pods.get(n)?.terminationMessage;
    if (msg !== undefined && CORRUPT_DATA_MESSAGES.some((re) => re.test(msg))) out.set(n, "its data failed the start-up checks");
  }
  return out;
}

/** Every member in the list answered HashKV, all with the same hash. */
function hashesAgree(obs: ObservedCluster): boolean {
  const hashed = obs.etcd.hashes ?? new Map();
  for (const m of obs.etcd.members ?? []) {
    const n = nameOf(obs, m);
    if (n === undefined || !hashed.has(n)) return false;
  }
  const keys = new Set([...(obs.etcd.hashes?.values() ?? [])].map((h) => `${h.revision}/${h.compactRevision}/${h.hash}`));
  return keys.size <= 1;
}

/** A permanent loss of quorum: the voters, those whose data is gone, and the rest. */
export interface QuorumLoss {
  voters: { name: string; id: string }[];
  lost: string[];
  survivors: { name: string; id: string }[];
}

/**
 * The loss of quorum no restart can heal: fewer than a majority of the voters in etcd's member
 * list still have their data. Undefined while a majority's data survives (members that are
 * merely down come back by themselves). Only a member list read from a survivor tells.
 */
export function quorumLossOf(obs: ObservedCluster): QuorumLoss | undefined {
  const members = obs.etcd.members;
  if (members === undefined) return undefined;
  const voters = members
    .filter((m) => !m.isLearner)
    .map((m) => ({ name: nameOf(obs, m), id: m.id }))
    .filter((v): v is { name: string; id: string } => v.name !== undefined);
  if (voters.length === 0) return undefined;
  const lost = voters.filter((v) => dataLost(obs, v.name, v.id));
  if (voters.length - lost.length >= quorum(voters.length)) return undefined;
  return { voters, lost: lost.map((v) => v.name).sort(), survivors: voters.filter((v) => !lost.includes(v)) };
}

export const DEFAULT_QUORUM_LOSS_AFTER_SECONDS = 300;
export const MIN_QUORUM_LOSS_AFTER_SECONDS = 30;
export const DEFAULT_RECOVERY_BUMP_REVISION = 1_000_000;

/**
 * Permanent quorum loss. Surviving members whose pods are gone are restarted first (as always).
 * Without spec.recovery.quorumLoss.enabled nothing else is done; with it, once the loss has
 * lasted afterSeconds (counted from status.quorumLoss.since, which the first pass that saw it
 * records), the most advanced answering survivor is restarted with --force-new-cluster, or with
 * source Backup (or no survivor answering, or memory storage) the cluster is rebuilt from a backup.
 */
function planQuorumLoss(obs: ObservedCluster, loss: QuorumLoss, opts: PlanOptions): Step {
  const lostText = `${loss.lost.join(", ")} lost their data (${loss.survivors.length} of ${loss.voters.length} voters left, ${quorum(loss.voters.length)} needed)`;
  if (!isMemory(obs)) {
    for (const v of loss.survivors) {
      if (obs.pods.has(v.name)) continue;
      const data = obs.volumes.get(v.name)!;
      return {
        kind: "create-pod",
        member: v.name,
        initialCluster: data.annotations[ANN_INITIAL_CLUSTER] ?? initialClusterOf(obs, loss.voters.map((x) => x.name).sort(), opts),
        state: data.annotations[ANN_INITIAL_STATE] === "new" ? "new" : "existing",
        memberId: v.id,
      };
    }
  }
  const r = obs.spec.recovery?.quorumLoss;
  if (r?.enabled !== true) {
    return {
      kind: "quorum-lost",
      lost: loss.lost,
      message:
        `quorum lost for good: ${lostText}; nothing is done automatically. Set spec.recovery.quorumLoss.enabled ` +
        "to let the operator restart the most advanced survivor with --force-new-cluster (or restore spec.recovery.quorumLoss.backupName), " +
        "or recreate the cluster from a backup (spec.bootstrap.restore)",
    };
  }
  const afterMs = Math.max(MIN_QUORUM_LOSS_AFTER_SECONDS, r.afterSeconds ?? DEFAULT_QUORUM_LOSS_AFTER_SECONDS) * 1000;
  const since = Date.parse(obs.previousStatus.quorumLoss?.since ?? "");
  const elapsed = Number.isNaN(since) ? 0 : obs.now - since;
  if (elapsed < afterMs) {
    return { kind: "quorum-lost", lost: loss.lost, message: `quorum lost: ${lostText}; recovery starts in ${Math.ceil((afterMs - elapsed) / 1000)}s unless it comes back` };
  }
  const backup = r.backupName !== undefined && r.backupName !== "" ? r.backupName : undefined;
  const fromBackup = (why: string): Step =>
    backup !== undefined
      ? { kind: "recover-from-backup", backupName: backup, lost: loss.lost }
      : { kind: "quorum-lost", lost: loss.lost, message: `quorum lost: ${lostText}; cannot recover: ${why} and spec.recovery.quorumLoss.backupName is not set` };
  if (r.source === "Backup") return fromBackup("source is Backup");
  if (isMemory(obs)) return fromBackup("with memory storage a survivor's data does not outlive its restart");
  const answering = loss.survivors
    .map((v) => ({ ...v, st: obs.etcd.statuses.get(v.name) }))
    .filter((v): v is { name: string; id: string; st: EtcdMemberStatus } => v.st !== undefined && v.st.id === v.id && !obs.pods.get(v.name)?.deleting);
  if (answering.length === 0) return fromBackup("no surviving member answers");
  answering.sort((a, b) => b.st.raftAppliedIndex - a.st.raftAppliedIndex || b.st.revision - a.st.revision || b.st.raftIndex - a.st.raftIndex || ordinalOf(obs, a.name) - ordinalOf(obs, b.name));
  const pick = answering[0]!;
  return { kind: "force-new-cluster", member: pick.name, id: pick.id, lost: loss.lost };
}

/** The member whose volume says it restarts with --force-new-cluster (recovery under way). */
function forcedMember(obs: ObservedCluster): { name: string; id: string } | undefined {
  if (isMemory(obs)) return undefined;
  for (const vol of [...obs.volumes.values()].sort(byName)) {
    const id = vol.annotations[ANN_FORCE_NEW_CLUSTER];
    if (id !== undefined && id !== "" && !vol.deleting) return { name: vol.name, id };
  }
  return undefined;
}

/**
 * Recovery under way: the forced member's pod is (re)created with --force-new-cluster; once it
 * answers as the only member of its cluster, the record is cleared and the pod replaced by a
 * normal one. Nothing else happens meanwhile (no member is added while the flag could apply).
 */
function planForced(obs: ObservedCluster, forced: { name: string; id: string }, opts: PlanOptions): Step {
  const pod = obs.pods.get(forced.name);
  const vol = obs.volumes.get(forced.name)!;
  if (pod === undefined) {
    return {
      kind: "create-pod",
      member: forced.name,
      initialCluster: vol.annotations[ANN_INITIAL_CLUSTER] ?? initialClusterOf(obs, [forced.name], opts),
      state: vol.annotations[ANN_INITIAL_STATE] === "new" ? "new" : "existing",
      memberId: forced.id,
      forceNewCluster: true,
    };
  }
  if (pod.deleting) return { kind: "wait", reason: "ForcingNewCluster", message: `waiting for the old pod of ${forced.name} to go` };
  if (pod.annotations[ANN_FORCE_NEW_CLUSTER] !== forced.id) return { kind: "delete-pod", member: forced.name, reason: "restart with --force-new-cluster" };
  const list = obs.etcd.members;
  const alone = list !== undefined && list.length === 1 && list[0]!.id === forced.id && obs.etcd.statuses.get(forced.name)?.id === forced.id;
  if (alone) return { kind: "finish-force-new-cluster", member: forced.name };
  return { kind: "wait", reason: "ForcingNewCluster", message: `waiting for ${forced.name} to serve alone after --force-new-cluster` };
}

/** A learner is promoted once it has applied this fraction of the leader's log (etcd refuses below 90%). */
export const PROMOTE_FRACTION = 0.9;

/** The leader's own Status answer, if the leader answered. */
export function leaderStatusOf(obs: ObservedCluster): EtcdMemberStatus | undefined {
  for (const st of obs.etcd.statuses.values()) {
    if (st.leaderId !== "0" && st.id === st.leaderId) return st;
  }
  return undefined;
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
