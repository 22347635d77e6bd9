/**
 * What one reconcile pass sees of a cluster: its Kubernetes objects and etcd's own view (the
 * member list and each member's Status). Built at the edges (reconciler.ts); read by the pure
 * planner (plan.ts) and status builder (status.ts).
 */
import type { EtcdClusterSpec, EtcdClusterStatus } from "../api/v1alpha1.js";

export interface ObservedPod {
  name: string;
  /** Pod phase (Pending, Running, Succeeded, Failed, Unknown). */
  phase: string;
  ready: boolean;
  deleting: boolean;
  podIP?: string;
  /** Creation time, ms since the epoch. */
  createdAt?: number;
  /** Annotations relevant to membership (member ID, initial cluster and state). */
  annotations: Record<string, string>;
  /**
   * The etcd container's last termination message (its state or lastState `terminated`; with
   * terminationMessagePolicy FallbackToLogsOnError, the tail of its log when it failed).
   */
  terminationMessage?: string;
}

export interface ObservedVolume {
  name: string;
  deleting: boolean;
  annotations: Record<string, string>;
}

/** One entry of etcd's member list. IDs are hex strings. */
export interface EtcdMemberEntry {
  id: string;
  /** Empty until the member has started and published its name. */
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

/** One member's answer to Maintenance.Status (keyed by member name in ObservedEtcd.statuses). */
export interface EtcdMemberStatus {
  id: string;
  leaderId: string;
  raftIndex: number;
  raftAppliedIndex: number;
  revision: number;
  dbSize: number;
  dbSizeInUse: number;
  version: string;
  isLearner: boolean;
  clusterId: string;
}

/** A raised alarm (Maintenance.Alarm GET): the member's ID in hex and the alarm. */
export interface EtcdAlarm {
  memberId: string;
  alarm: "NOSPACE" | "CORRUPT" | "NONE";
}

export interface ObservedEtcd {
  /** etcd's member list, or undefined when no member answered MemberList. */
  members?: EtcdMemberEntry[];
  /** Whether authentication is on: undefined when not asked (auth never wanted) or not answered. */
  authEnabled?: boolean;
  /** Status answers by member name; a member missing here did not answer. */
  statuses: Map<string, EtcdMemberStatus>;
  /** Active alarms (AlarmList), when a voter answered it. memberId "0" is the whole cluster (etcd's CORRUPT). */
  alarms?: EtcdAlarm[];
  /**
   * HashKV of each answering member at one revision (the lowest any member reports), read only
   * while a CORRUPT alarm is active: members whose hash differs from a quorum's are the corrupt ones.
   */
  hashes?: Map<string, { hash: number; compactRevision: number; revision: number }>;
}

export interface ObservedCluster {
  name: string;
  namespace: string;
  generation: number;
  spec: EtcdClusterSpec;
  previousStatus: EtcdClusterStatus;
  pods: Map<string, ObservedPod>;
  /** Member PVCs by member name (not PVC name). Empty with memory storage. */
  volumes: Map<string, ObservedVolume>;
  etcd: ObservedEtcd;
  /**
   * podSpecHash of the current spec: pods whose ANN_SPEC_HASH differs are rolled. Undefined
   * turns rolling off (the planner's unit tests that are not about it).
   */
  specHash?: string;
  /** Why the TLS material the spec asks for is not there (a user's Secret missing or incomplete). */
  tlsProblem?: string;
  /** The operator-issued CA's expiry (ms) and rotation phase, when it issues one. */
  ca?: { notAfter: number; phase: string };
  /**
   * Root credentials for spec.auth: ready (the Secret holds a password) or why not; undefined
   * when auth is neither wanted nor on.
   */
  authCredentials?: { ready: true } | { ready: false; problem: string };
  /** The latest slot (ms) of spec.defrag.schedule at or before now; undefined without a schedule. */
  defragSlot?: number;
  /** The pass's time, ms since the epoch. */
  now: number;
}
