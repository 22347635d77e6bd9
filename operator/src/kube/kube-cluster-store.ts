/**
 * The reconciler's ClusterStore on the Kubernetes API (@kubernetes/client-node 1.x): member pods
 * and PVCs found by label, objects created or patched idempotently, the EtcdCluster's status
 * replaced through the status subresource, events recorded against the EtcdCluster.
 */
import { recordEvent, replaceStatus } from "./object-writes.js";
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
  type V1PersistentVolumeClaim,
  type V1Pod,
} from "@kubernetes/client-node";
import { CLUSTER_PLURAL, GROUP, VERSION, type EtcdCluster, type EtcdClusterStatus } from "../api/v1alpha1.js";
import { LABEL_CLUSTER, LABEL_MANAGED_BY, LABEL_MEMBER, MANAGED_BY } from "../cluster/naming.js";
import type { ObservedPod, ObservedVolume } from "../cluster/observed.js";
import type { ClusterStore } from "../cluster/reconciler.js";
import { ownerReference } from "../cluster/manifests.js";
import { selectorLabels } from "../cluster/naming.js";
import type { SecretStore, StoredSecret } from "../tls/operator-tls.js";

export function isNotFound(err: unknown): boolean {
  return err instanceof ApiException && err.code === 404;
}

/** A short text for an API error: the code and the API server's message, not the whole response. */
export function apiErrorText(err: unknown): string {
  if (err instanceof ApiException) {
    let msg = "";
    try {
      const body = typeof err.body === "string" ? JSON.parse(err.body) : err.body;
      msg = body?.message ?? "";
    } catch {
      msg = String(err.body).slice(0, 300);
    }
    return `HTTP ${err.code}: ${msg}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Drops empty strings (and empty objects left behind): the schema types these fields as strings, and an empty one is no information. */
export function withoutEmpty<T>(v: T): T {
  if (Array.isArray(v)) return v.map(withoutEmpty) as T;
  if (v !== null && typeof v === "object" && !(v instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (x === "" || x === undefined || x === null) continue;
      out[k] = withoutEmpty(x);
    }
    return out as T;
  }
  return v;
}

export function isConflict(err: unknown): boolean {
  return err instanceof ApiException && err.code === 409;
}

export function memberSelector(cluster: string): string {
  return `${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_CLUSTER}=${cluster}`;
}

export function toObservedPod(p: V1Pod): ObservedPod {
  return {
    name: p.metadata?.labels?.[LABEL_MEMBER] ?? p.metadata?.name ?? "",
    phase: p.status?.phase ?? "Unknown",
    ready: p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
    deleting: p.metadata?.deletionTimestamp != null,
    ...(p.status?.podIP ? { podIP: p.status.podIP } : {}),
    ...(p.metadata?.creationTimestamp ? { createdAt: new Date(p.metadata.creationTimestamp).getTime() } : {}),
    annotations: { ...(p.metadata?.annotations ?? {}) },
    ...terminationOf(p),
  };
}

/** The etcd container's termination message: of its current state if it is terminated, else of its last one. */
function terminationOf(p: V1Pod): { terminationMessage?: string } {
  const cs = p.status?.containerStatuses?.find((c) => c.name === "etcd");
  const msg = cs?.state?.terminated?.message ?? cs?.lastState?.terminated?.message;
  return msg !== undefined && msg !== "" ? { terminationMessage: msg } : {};
}

export function toObservedVolume(v: V1PersistentVolumeClaim): ObservedVolume {
  return {
    name: v.metadata?.labels?.[LABEL_MEMBER] ?? "",
    deleting: v.metadata?.deletionTimestamp != null,
    annotations: { ...(v.metadata?.annotations ?? {}) },
  };
}

export class KubeClusterStore implements ClusterStore, SecretStore {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly objects: KubernetesObjectApi;
  private readonly policy: PolicyV1Api;
  private pdbVersion: string | undefined;

  constructor(
    private readonly options: { component: string },
    deps: { kubeConfig: KubeConfig },
  ) {
    this.core = deps.kubeConfig.makeApiClient(CoreV1Api);
    this.custom = deps.kubeConfig.makeApiClient(CustomObjectsApi);
    this.policy = deps.kubeConfig.makeApiClient(PolicyV1Api);
    this.objects = KubernetesObjectApi.makeApiClient(deps.kubeConfig);
  }

  async listPods(namespace: string, cluster: string): Promise<ObservedPod[]> {
    const list = await this.core.listNamespacedPod({ namespace, labelSelector: memberSelector(cluster) });
    return list.items.filter((p) => p.metadata?.labels?.[LABEL_MEMBER]).map(toObservedPod);
  }

  async listVolumes(namespace: string, cluster: string): Promise<ObservedVolume[]> {
    const list = await this.core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector: memberSelector(cluster) });
    return list.items.filter((v) => v.metadata?.labels?.[LABEL_MEMBER]).map(toObservedVolume);
  }

  async create(obj: Record<string, unknown>): Promise<void> {
    try {
      await this.objects.create(obj as KubernetesObject);
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }

  async apply(obj: Record<string, unknown>): Promise<void> {
    const o = obj as KubernetesObject & { spec?: Record<string, unknown> };
    let current: KubernetesObject & { spec?: Record<string, unknown> };
    try {
      current = await this.objects.read({ apiVersion: o.apiVersion!, kind: o.kind!, metadata: { name: o.metadata!.name!, namespace: o.metadata!.namespace! } });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.create(obj);
      return;
    }
    // Services keep what the API server filled in (clusterIP); only fields we own are compared.
    const differs = o.kind === "PodDisruptionBudget" && JSON.stringify(current.spec?.minAvailable) !== JSON.stringify(o.spec?.minAvailable);
    if (differs) {
      await this.objects.patch(
        { apiVersion: o.apiVersion, kind: o.kind, metadata: { name: o.metadata!.name, namespace: o.metadata!.namespace }, spec: { minAvailable: o.spec?.minAvailable } } as KubernetesObject,
        undefined,
        undefined,
        this.options.component,
        undefined,
        PatchStrategy.MergePatch,
      );
    }
  }

  async delete(kind: "Pod" | "PersistentVolumeClaim", namespace: string, name: string): Promise<void> {
    try {
      if (kind === "Pod") await this.core.deleteNamespacedPod({ name, namespace });
      else await this.core.deleteNamespacedPersistentVolumeClaim({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async annotate(_kind: "PersistentVolumeClaim", namespace: string, name: string, annotations: Record<string, string>): Promise<void> {
    await this.core.patchNamespacedPersistentVolumeClaim(
      { name, namespace, body: { metadata: { annotations } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  }

  async writeStatus(cluster: EtcdCluster, status: EtcdClusterStatus): Promise<void> {
    await replaceStatus(this.custom, CLUSTER_PLURAL, cluster, status);
  }

  async event(cluster: EtcdCluster, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    await recordEvent(this.core, this.options.component, cluster, type, reason, message);
  }

  async pdbApiVersion(): Promise<string> {
    if (this.pdbVersion === undefined) {
      try {
        await this.policy.getAPIResources();
        this.pdbVersion = "policy/v1";
      } catch (err) {
        if (!isNotFound(err)) throw err;
        this.pdbVersion = "policy/v1beta1";
      }
    }
    return this.pdbVersion;
  }

  async getSecret(namespace: string, name: string): Promise<StoredSecret | undefined> {
    try {
      const s = await this.core.readNamespacedSecret({ name, namespace });
      const data: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.data ?? {})) data[k] = Buffer.from(v, "base64").toString("utf8");
      for (const [k, v] of Object.entries(s.stringData ?? {})) data[k] ??= v;
      return { data, annotations: { ...(s.metadata?.annotations ?? {}) } };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async putSecret(owner: EtcdCluster, name: string, secret: StoredSecret): Promise<void> {
    const namespace = owner.metadata.namespace;
    const body = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name,
        namespace,
        labels: selectorLabels(owner.metadata.name),
        annotations: secret.annotations,
        ownerReferences: [ownerReference(owner) as never],
      },
      type: secret.data["tls.crt"] !== undefined && secret.data["tls.key"] !== undefined ? "kubernetes.io/tls" : "Opaque",
      data: Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v, "utf8").toString("base64")])),
    };
    try {
      await this.core.createNamespacedSecret({ namespace, body });
    } catch (err) {
      if (!isConflict(err)) throw err;
      const current = await this.core.readNamespacedSecret({ name, namespace });
      await this.core.replaceNamespacedSecret({ name, namespace, body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } } });
    }
  }

  /** Reads an EtcdCluster afresh; undefined when it is gone. */
  async getCluster(namespace: string, name: string): Promise<EtcdCluster | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: CLUSTER_PLURAL, name })) as EtcdCluster;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }
}
