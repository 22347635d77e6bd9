/**
 * The operator's reconciler against real members without Kubernetes: a ClusterStore whose pods
 * are the test's member processes (all Running; each reached on its own loopback port through
 * ReconcilerDeps.addressOf), whose volumes record member IDs in memory, and which records the
 * status and events the reconciler writes; a SecretStore in memory. The test says which spec
 * hash each "pod" runs (what it was last started with) and whether it is ready. With `podHooks`
 * the reconciler's pod deletions and creations (rolling) stop and start the test's processes.
 */
import type { EtcdCluster, EtcdClusterStatus } from "../../operator/src/api/v1alpha1.js";
import { ANN_CLIENT_TLS, ANN_SPEC_HASH } from "../../operator/src/cluster/naming.js";
import type { ObservedPod, ObservedVolume } from "../../operator/src/cluster/observed.js";
import type { ClusterStore } from "../../operator/src/cluster/reconciler.js";
import type { SecretStore, StoredSecret } from "../../operator/src/tls/operator-tls.js";

export class MemorySecrets implements SecretStore {
  secrets = new Map<string, StoredSecret>();
  async getSecret(ns: string, name: string) {
    const s = this.secrets.get(`${ns}/${name}`);
    return s && structuredClone(s);
  }
  async putSecret(owner: EtcdCluster, name: string, s: StoredSecret) {
    this.secrets.set(`${owner.metadata.namespace}/${name}`, structuredClone(s));
  }
}

export interface WorldPod {
  /** `host:port` of the member's client port the operator dials. */
  address: string;
  /** The spec hash the member was (re)started with. */
  hash: string;
  ready: boolean;
  clientTls?: boolean;
}

/** What deleting and creating a member's pod does to the test's process. */
export interface PodHooks {
  deleted(member: string): Promise<void>;
  /** Starts the member again; `pod` is the reconciler's pod object (its spec hash in the annotations). */
  created(member: string, pod: Record<string, any>): Promise<WorldPod>;
}

export class MemberWorld implements ClusterStore {
  pods = new Map<string, WorldPod>();
  /** Members with a volume (default: those with a pod when first listed). */
  volumes = new Set<string>();
  podHooks: PodHooks | undefined;
  volumeAnnotations = new Map<string, Record<string, string>>();
  events: string[] = [];
  status: EtcdClusterStatus | undefined;
  /** Objects the reconciler applied or created (Services, PDB; pods are the test's). */
  applied: Record<string, unknown>[] = [];

  addressOf = (pod: ObservedPod): string => this.pods.get(pod.name)!.address;

  async listPods(): Promise<ObservedPod[]> {
    return [...this.pods.entries()].map(([name, p]) => ({
      name,
      phase: "Running",
      ready: p.ready,
      deleting: false,
      podIP: "127.0.0.1",
      annotations: { [ANN_SPEC_HASH]: p.hash, ...(p.clientTls ? { [ANN_CLIENT_TLS]: "true" } : {}) },
    }));
  }
  async listVolumes(): Promise<ObservedVolume[]> {
    for (const n of this.pods.keys()) this.volumes.add(n);
    return [...this.volumes].map((name) => ({ name, deleting: false, annotations: { ...(this.volumeAnnotations.get(name) ?? {}) } }));
  }
  async create(obj: Record<string, any>): Promise<void> {
    this.applied.push(obj);
    if (obj.kind !== "Pod") return;
    const member = obj.metadata.name as string;
    if (this.podHooks === undefined || this.pods.has(member)) throw new Error(`pod ${member}: not created in this world`);
    this.pods.set(member, await this.podHooks.created(member, obj));
  }
  async apply(obj: Record<string, unknown>): Promise<void> {
    this.applied.push(obj);
    if (this.applied.length > 100) this.applied.splice(0, 50);
  }
  async delete(kind: "Pod" | "PersistentVolumeClaim", _ns: string, name: string): Promise<void> {
    if (kind !== "Pod" || this.podHooks === undefined) throw new Error("this world's pods are the test's processes");
    this.pods.delete(name);
    await this.podHooks.deleted(name);
  }
  async annotate(_kind: "PersistentVolumeClaim", _ns: string, name: string, annotations: Record<string, string>): Promise<void> {
    const member = name.replace(/^data-/, "");
    this.volumeAnnotations.set(member, { ...(this.volumeAnnotations.get(member) ?? {}), ...annotations });
  }
  async writeStatus(cluster: EtcdCluster, status: EtcdClusterStatus): Promise<void> {
    this.status = structuredClone(status);
    cluster.status = structuredClone(status);
  }
  async event(_c: EtcdCluster, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    this.events.push(`${type} ${reason}: ${message}`);
  }
  async pdbApiVersion(): Promise<string> {
    return "policy/v1";
  }
}

export function clusterObject(name: string, spec: EtcdCluster["spec"]): EtcdCluster {
  return { apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdCluster", metadata: { name, namespace: "ns", uid: "u", generation: 1 }, spec };
}
