/**
 * Names, labels, annotations and URLs of the objects the operator makes for one EtcdCluster.
 * Members are named `<cluster>-<ordinal>`; a member's pod and its PVC (`data-<member>`) carry that
 * name, so one specific member can be replaced. Peers reach each other by the headless Service's
 * per-pod DNS names: `<member>.<cluster>.<namespace>.svc.<clusterDomain>`.
 */

export const CLIENT_PORT = 2379;
export const PEER_PORT = 2380;
export const DATA_MOUNT = "/var/lib/etcd";
export const DATA_DIR = `${DATA_MOUNT}/data`;

export const LABEL_CLUSTER = "etcd.etcd-ts.io/cluster";
export const LABEL_MEMBER = "etcd.etcd-ts.io/member";
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "etcd-ts-operator";

/** On a member's PVC (or, with memory storage, its pod): the etcd member ID (hex) the data belongs to. */
export const ANN_MEMBER_ID = "etcd.etcd-ts.io/member-id";
/** On a member's PVC (or pod): the --initial-cluster the member was first started with. */
export const ANN_INITIAL_CLUSTER = "etcd.etcd-ts.io/initial-cluster";
/** On a member's PVC (or pod): "new" or "existing", the --initial-cluster-state it was first started with. */
export const ANN_INITIAL_STATE = "etcd.etcd-ts.io/initial-cluster-state";

/**
 * On a member's PVC (and the pod started from it): the member ID that restarts once with
 * --force-new-cluster to recover from a permanent loss of quorum; "" or absent: none.
 */
export const ANN_FORCE_NEW_CLUSTER = "etcd.etcd-ts.io/force-new-cluster";
/**
 * On a member's pod: the hash of the pod-relevant spec it was created from (podSpecHash). A pod
 * whose hash differs from the spec's is rolled (deleted and recreated on its volume).
 */
export const ANN_SPEC_HASH = "etcd.etcd-ts.io/spec-hash";
/** On a member's pod: "true" when its client port serves TLS (the operator dials it so). */
export const ANN_CLIENT_TLS = "etcd.etcd-ts.io/client-tls";

export interface ClusterRef {
  name: string;
  namespace: string;
}

export function memberName(cluster: string, ordinal: number): string {
  return `${cluster}-${ordinal}`;
}

/** The ordinal of a member name of this cluster, or undefined for a name the operator did not give. */
export function memberOrdinal(cluster: string, member: string): number | undefined {
  const prefix = `${cluster}-`;
  if (!member.startsWith(prefix)) return undefined;
  const rest = member.slice(prefix.length);
  return /^(0|[1-9][0-9]{0,3})$/.test(rest) ? Number(rest) : undefined;
}

export function pvcName(member: string): string {
  return `data-${member}`;
}

export function headlessServiceName(cluster: string): string {
  return cluster;
}

export function clientServiceName(cluster: string): string {
  return `${cluster}-client`;
}

export function pdbName(cluster: string): string {
  return cluster;
}

export function memberHost(ref: ClusterRef, member: string, clusterDomain: string): string {
  return `${member}.${headlessServiceName(ref.name)}.${ref.namespace}.svc.${clusterDomain}`;
}

/** A member's peer URL (https with peer TLS). */
export function peerURL(ref: ClusterRef, member: string, clusterDomain: string, tls = false): string {
  return `${tls ? "https" : "http"}://${memberHost(ref, member, clusterDomain)}:${PEER_PORT}`;
}

/** A member's client URL (https with client TLS). */
export function clientURL(ref: ClusterRef, member: string, clusterDomain: string, tls = false): string {
  return `${tls ? "https" : "http"}://${memberHost(ref, member, clusterDomain)}:${CLIENT_PORT}`;
}

/** The member name a peer URL of ours points at (its first DNS label), or undefined. */
export function memberFromPeerURL(ref: ClusterRef, url: string): string | undefined {
  try {
    const host = new URL(url).hostname;
    const first = host.split(".")[0];
    return first !== undefined && memberOrdinal(ref.name, first) !== undefined ? first : undefined;
  } catch {
    return undefined;
  }
}

export function selectorLabels(cluster: string): Record<string, string> {
  return { [LABEL_CLUSTER]: cluster, [LABEL_MANAGED_BY]: MANAGED_BY };
}

/** Members' IDs as etcd-ts and etcdctl print them: lowercase hex without leading zeros. */
export function memberIdHex(id: bigint): string {
  return id.toString(16);
}
