/**
 * The EtcdCluster's status from what a pass observed and the step it chose. Pure: the time comes
 * in, and a condition keeps its lastTransitionTime while its status does not change.
 */
import type { ClusterPhase, Condition, EtcdClusterStatus, MemberStatus, QuorumLossStatus } from "../api/v1alpha1.js";
import type { ObservedCluster } from "./observed.js";
import { lastDefragOf, nospaceSince, scheduleDone } from "./defrag-plan.js";
import { nameOf, podHashOf, quorum, quorumLossOf, type Step } from "./plan.js";

export function describeStep(step: Step): string {
  switch (step.kind) {
    case "bootstrap":
      return `bootstrap ${step.members.join(",")}`;
    case "create-pod":
      return `start pod of ${step.member}`;
    case "add-learner":
      return `add ${step.member} as a learner`;
    case "promote":
      return `promote ${step.member}`;
    case "move-leader":
      return `move leadership from ${step.from} to ${step.to}${step.reason === "roll" ? " (roll)" : ""}`;
    case "roll-member":
      return `roll ${step.member} to spec ${step.toHash} (was ${step.fromHash || "unrecorded"})`;
    case "refused":
      return `refused: ${step.message}`;
    case "remove-member":
      return `remove ${step.member} (${step.reason}${step.detail !== undefined ? `: ${step.detail}` : ""})`;
    case "disarm-alarm":
      return step.alarm === "CORRUPT"
        ? `disarm the CORRUPT alarm (member ${step.memberId}): every member's data agrees again`
        : `disarm ${step.alarm} of member ${step.memberId}`;
    case "quorum-lost":
      return step.message;
    case "force-new-cluster":
      return `recover from quorum loss (${step.lost.join(", ")} lost): restart ${step.member} alone with --force-new-cluster`;
    case "finish-force-new-cluster":
      return `${step.member} serves alone: restart it without --force-new-cluster, then re-add the others`;
    case "recover-from-backup":
      return `recover from quorum loss (${step.lost.join(", ")} lost): replace every member from backup ${step.backupName}`;
    case "delete-pod":
      return `delete pod of ${step.member} (${step.reason})`;
    case "delete-volume":
      return `delete volume of ${step.member} (${step.reason})`;
    case "record-member-id":
      return `record member ID ${step.id} on ${step.member}'s volume`;
    case "enable-auth":
      return "enable authentication (user root, role root, auth enable)";
    case "disable-auth":
      return "disable authentication";
    case "defragment":
      return `defragment ${step.member} (${step.reason})`;
    case "wait":
      return `wait: ${step.message}`;
    case "invalid-spec":
      return `invalid spec: ${step.message}`;
    case "paused":
      return "paused";
    case "steady":
      return "steady";
  }
}

function progressingReason(step: Step): string | undefined {
  switch (step.kind) {
    case "bootstrap":
      return "Bootstrapping";
    case "create-pod":
      return step.forceNewCluster === true ? "RecoveringQuorum" : "RestartingMember";
    case "force-new-cluster":
    case "finish-force-new-cluster":
      return "RecoveringQuorum";
    case "recover-from-backup":
      return "RestoringBackup";
    case "disarm-alarm":
      return step.alarm === "CORRUPT" ? "Repairing" : "DisarmingAlarm";
    case "quorum-lost":
      return undefined;
    case "add-learner":
    case "promote":
      return "ScalingOut";
    case "move-leader":
      return step.reason === "roll" ? "Rolling" : "MovingLeader";
    case "roll-member":
      return "Rolling";
    case "remove-member":
      return step.reason === "repair" || step.reason === "corrupt" ? "Repairing" : step.reason === "failed-join" ? "JoinFailed" : "ScalingIn";
    case "delete-pod":
    case "delete-volume":
      return "CleaningUp";
    case "record-member-id":
      return "RecordingMemberIDs";
    case "enable-auth":
      return "EnablingAuth";
    case "disable-auth":
      return "DisablingAuth";
    case "defragment":
      return "Defragmenting";
    case "wait":
      return step.reason;
    default:
      return undefined;
  }
}

export function buildStatus(obs: ObservedCluster, step: Step, now: string): EtcdClusterStatus {
  const list = obs.etcd.members;
  const members: MemberStatus[] = [];
  let leader: string | undefined;
  let clusterID: string | undefined;
  let version: string | undefined;
  let healthyVoters = 0;
  let voters = 0;
  for (const m of list ?? []) {
    const name = nameOf(obs, m) ?? m.id;
    const st = obs.etcd.statuses.get(name);
    const pod = obs.pods.get(name);
    const role = m.isLearner ? "learner" : st === undefined ? "unknown" : st.leaderId === m.id ? "leader" : "follower";
    if (!m.isLearner) {
      voters++;
      if (st !== undefined) healthyVoters++;
    }
    if (role === "leader") leader = name;
    if (st !== undefined) {
      clusterID ??= st.clusterId;
      if (version === undefined || compareVersions(st.version, version) < 0) version = st.version;
    }
    members.push({
      name,
      id: m.id,
      role,
      healthy: st !== undefined,
      ...(st ? { revision: st.revision, raftIndex: st.raftIndex, dbSize: st.dbSize, dbSizeInUse: st.dbSizeInUse, version: st.version } : {}),
      ...(pod?.podIP ? { podIP: pod.podIP } : {}),
      ...(podHashOf(obs, name) ? { specHash: podHashOf(obs, name) } : {}),
      ...(lastDefragOf(obs, name) !== undefined ? { lastDefragTime: new Date(lastDefragOf(obs, name)!).toISOString() } : {}),
    });
  }
  if (leader === undefined) {
    // The leader may be known to followers even when it did not answer us.
    const leaderId = [...obs.etcd.statuses.values()].find((s) => s.leaderId !== "0")?.leaderId;
    const lm = list?.find((m) => m.id === leaderId);
    if (lm) leader = nameOf(obs, lm);
  }
  members.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // Mid-roll: some members on the new spec, some not (or a member's pod gone while others are updated).
  const rolling = obs.specHash !== undefined && members.some((m) => m.specHash === obs.specHash) && members.some((m) => m.specHash !== obs.specHash);
  const available = list !== undefined && voters > 0 && healthyVoters >= quorum(voters);
  const unhealthy = members.filter((m) => !m.healthy).map((m) => m.name);
  const reason = progressingReason(step);
  const quorumLoss = quorumLossStatus(obs, step, now);
  const conditions: Condition[] = [
    available
      ? { type: "Available", status: "True", reason: "QuorumHealthy", message: `${healthyVoters} of ${voters} voters answer` }
      : {
          type: "Available",
          status: "False",
          reason: list === undefined ? "NoMemberList" : "QuorumLost",
          message: list === undefined ? "no member answers" : `${healthyVoters} of ${voters} voters answer`,
        },
    reason !== undefined
      ? { type: "Progressing", status: "True", reason, message: describeStep(step) }
      : {
          type: "Progressing",
          status: "False",
          reason: step.kind === "paused" ? "Paused" : step.kind === "refused" ? step.reason : "Steady",
          message: describeStep(step),
        },
    step.kind === "invalid-spec"
      ? { type: "Degraded", status: "True", reason: "InvalidSpec", message: step.message }
      : step.kind === "quorum-lost"
        ? { type: "Degraded", status: "True", reason: "QuorumLost", message: step.message }
        : quorumLoss !== undefined
          ? { type: "Degraded", status: "True", reason: "Recovering", message: `recovering from quorum loss: ${quorumLoss.phase}${quorumLoss.member ? ` (${quorumLoss.member})` : ""}${quorumLoss.backupName ? ` (backup ${quorumLoss.backupName})` : ""}` }
          : unhealthy.length > 0
        ? { type: "Degraded", status: "True", reason: "MembersUnhealthy", message: `not answering: ${unhealthy.join(", ")}` }
        : list !== undefined && list.length < obs.spec.size && step.kind !== "add-learner" && step.kind !== "promote"
          ? { type: "Degraded", status: "True", reason: "TooFewMembers", message: `${list.length} of ${obs.spec.size} members` }
          : { type: "Degraded", status: "False", reason: "AsExpected", message: "" },
  ];
  const previous = obs.previousStatus.conditions ?? [];
  for (const c of conditions) {
    const old = previous.find((p) => p.type === c.type);
    c.lastTransitionTime = old !== undefined && old.status === c.status && old.lastTransitionTime ? old.lastTransitionTime : now;
    c.observedGeneration = obs.generation;
  }

  const authEnabled = step.kind === "enable-auth" ? true : step.kind === "disable-auth" ? false : (obs.etcd.authEnabled ?? obs.previousStatus.authEnabled);
  const slotDone = scheduleDone(
    obs.defragSlot,
    members.map((m) => lastDefragOf(obs, m.name)),
  );
  const defragDone = slotDone !== undefined ? new Date(slotDone).toISOString() : obs.previousStatus.defrag?.lastScheduleTime;
  // Kept while the alarms are unknown (no member answered), so a pass that cannot see them does
  // not restart the alarm's defragmentations.
  const sinceMs = nospaceSince(obs);
  const since = obs.etcd.alarms === undefined ? obs.previousStatus.defrag?.nospaceSince : sinceMs !== undefined ? new Date(sinceMs).toISOString() : undefined;
  const defrag = { ...(defragDone !== undefined ? { lastScheduleTime: defragDone } : {}), ...(since !== undefined ? { nospaceSince: since } : {}) };
  return {
    phase: phaseOf(step, available, list !== undefined, rolling),
    observedGeneration: obs.generation,
    size: list?.length ?? 0,
    readyMembers: members.filter((m) => m.healthy).length,
    ...(leader ? { leader } : {}),
    ...(clusterID ? { clusterID } : {}),
    ...(version ? { currentVersion: version } : {}),
    ...(obs.specHash ? { specHash: obs.specHash, updatedMembers: members.filter((m) => m.specHash === obs.specHash).length } : {}),
    lastAction: step.kind === "wait" || step.kind === "steady" || step.kind === "quorum-lost" ? (obs.previousStatus.lastAction ?? "") : describeStep(step),
    conditions,
    members,
    ...(quorumLoss !== undefined ? { quorumLoss } : {}),
    ...(authEnabled !== undefined ? { authEnabled } : {}),
    ...(Object.keys(defrag).length > 0 ? { defrag } : {}),
    ...(obs.ca !== undefined ? { tls: { caNotAfter: new Date(obs.ca.notAfter).toISOString(), caRotationPhase: obs.ca.phase } } : {}),
  };
}

/**
 * status.quorumLoss: started (since = now) by the first pass that finds quorum lost for good,
 * moved along by the recovery's steps, kept through waits and restarts, gone once a pass finds
 * nothing to do (steady) or the cluster is whole again while no recovery was under way.
 */
export function quorumLossStatus(obs: ObservedCluster, step: Step, now: string): QuorumLossStatus | undefined {
  const prev = obs.previousStatus.quorumLoss;
  const since = prev?.since ?? now;
  switch (step.kind) {
    case "quorum-lost":
      return { since, phase: "Lost", lostMembers: step.lost };
    case "force-new-cluster":
      return { since, phase: "ForcingNewCluster", lostMembers: step.lost, member: step.member };
    case "finish-force-new-cluster":
      return { ...(prev ?? { since }), phase: "Rejoining", member: step.member };
    case "recover-from-backup":
      return { since, phase: "RestoringBackup", lostMembers: step.lost, backupName: step.backupName };
    case "steady":
    case "paused":
    case "invalid-spec":
      return undefined;
    default:
      if (prev === undefined) return undefined;
      if (prev.phase === "Lost") return quorumLossOf(obs) !== undefined || obs.etcd.members === undefined ? prev : undefined;
      if (prev.phase === "RestoringBackup" && obs.etcd.members !== undefined && quorumLossOf(obs) === undefined) return { ...prev, phase: "Rejoining" };
      return prev;
  }
}

function phaseOf(step: Step, available: boolean, formed: boolean, rolling: boolean): ClusterPhase {
  switch (step.kind) {
    case "invalid-spec":
      return "Failed";
    case "paused":
      return "Paused";
    case "bootstrap":
      return "Creating";
    case "add-learner":
    case "promote":
      return "Scaling";
    case "move-leader":
      return step.reason === "roll" ? "Upgrading" : "Scaling";
    case "roll-member":
      return "Upgrading";
    case "remove-member":
      return step.reason === "scale-in" ? "Scaling" : "Repairing";
    case "force-new-cluster":
    case "finish-force-new-cluster":
    case "recover-from-backup":
    case "disarm-alarm":
      return "Repairing";
    case "quorum-lost":
      return "Degraded";
    case "steady":
      return "Running";
    default:
      if (!formed) return "Creating";
      if (!available) return "Degraded";
      if (step.kind === "wait" && step.reason === "LearnerStarting") return "Scaling";
      if (step.kind === "wait" && step.reason.startsWith("Roll")) return "Upgrading";
      // A rolled member's pod coming back, or waiting for it to answer, while others are outdated.
      if (rolling) return "Upgrading";
      return "Running";
  }
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
