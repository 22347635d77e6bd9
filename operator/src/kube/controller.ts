/**
 * The EtcdCluster controller: informers on EtcdClusters and on the operator's member pods and
 * PVCs feed a deduplicating work queue of cluster keys; `workers` loops take keys, read the
 * cluster afresh and run one reconcile pass, then requeue it after the pass's delay (errors back
 * off). A resync re-adds every known cluster periodically, so a missed event costs only time.
 * Runs only while this replica leads (see main.ts).
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
} from "@kubernetes/client-node";
import { CLUSTER_PLURAL, GROUP, VERSION, type EtcdCluster } from "../api/v1alpha1.js";
import { LABEL_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY } from "../cluster/naming.js";
import type { Reconciler } from "../cluster/reconciler.js";
import type { Log } from "../logger.js";
import { apiErrorText, type KubeClusterStore } from "./kube-cluster-store.js";
import { WorkQueue } from "./work-queue.js";

export interface ControllerOptions {
  /** Watch one namespace, or all when empty. */
  namespace: string;
  workers: number;
  resyncMs: number;
  maxQueuedKeys: number;
  /** Retry delay after a failed pass, ms (doubles per consecutive failure, up to 16x). */
  errorBackoffMs: number;
}

export interface ControllerDeps {
  kubeConfig: KubeConfig;
  store: KubeClusterStore;
  reconciler: Reconciler;
  log: Log;
}

type AnyInformer = Informer<KubernetesObject> & ObjectCache<KubernetesObject>;

export class Controller {
  readonly queue: WorkQueue;
  private readonly informers: AnyInformer[] = [];
  private readonly failures = new Map<string, number>();
  private running = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private clusters: AnyInformer | undefined;
  /** Passes run (for tests and metrics). */
  passes = 0;

  constructor(
    private readonly options: ControllerOptions,
    private readonly deps: ControllerDeps,
  ) {
    this.queue = new WorkQueue({ maxKeys: options.maxQueuedKeys });
  }

  async start(): Promise<void> {
    this.running = true;
    const { kubeConfig } = this.deps;
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const ns = this.options.namespace;
    const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
    const prefix = ns ? `/namespaces/${ns}` : "";

    const clusters = makeInformer(
      kubeConfig,
      `/apis/${GROUP}/${VERSION}${prefix}/${CLUSTER_PLURAL}`,
      () =>
        (ns
          ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: CLUSTER_PLURAL })
          : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: CLUSTER_PLURAL })) as never,
    ) as AnyInformer;
    const enqueueCluster = (o: KubernetesObject) => this.queue.add(`${o.metadata?.namespace}/${o.metadata?.name}`);
    clusters.on("add", enqueueCluster);
    clusters.on("update", enqueueCluster);
    clusters.on("delete", (o) => this.failures.delete(`${o.metadata?.namespace}/${o.metadata?.name}`));
    this.clusters = clusters;

    const owned = (o: KubernetesObject) => {
      const c = o.metadata?.labels?.[LABEL_CLUSTER];
      if (c) this.queue.add(`${o.metadata?.namespace}/${c}`);
    };
    const pods = makeInformer(
      kubeConfig,
      `/api/v1${prefix}/pods`,
      () => (ns ? core.listNamespacedPod({ namespace: ns, labelSelector: selector }) : core.listPodForAllNamespaces({ labelSelector: selector })) as never,
      selector,
    ) as AnyInformer;
    const pvcs = makeInformer(
      kubeConfig,
      `/api/v1${prefix}/persistentvolumeclaims`,
      () =>
        (ns
          ? core.listNamespacedPersistentVolumeClaim({ namespace: ns, labelSelector: selector })
          : core.listPersistentVolumeClaimForAllNamespaces({ labelSelector: selector })) as never,
      selector,
    ) as AnyInformer;
    for (const inf of [pods, pvcs]) {
      inf.on("add", owned);
      inf.on("update", owned);
      inf.on("delete", owned);
    }
    for (const inf of [clusters, pods, pvcs]) {
      // A dropped watch or a failed list: start again after a pause (the informer re-lists).
      inf.on("error", (err: unknown) => {
        if (!this.running) return;
        this.deps.log.warn("watch failed; restarting", { error: String((err as Error)?.message ?? err) });
        setTimeout(() => {
          if (this.running) inf.start().catch(() => {});
        }, 2000).unref();
      });
      this.informers.push(inf);
    }
    await Promise.all(this.informers.map((i) => i.start()));
    this.resyncTimer = setInterval(() => this.resync(), this.options.resyncMs);
    this.resyncTimer.unref();
    for (let i = 0; i < this.options.workers; i++) void this.work();
  }

  private resync(): void {
    for (const c of this.clusters?.list() ?? []) this.queue.add(`${c.metadata?.namespace}/${c.metadata?.name}`);
  }

  private async work(): Promise<void> {
    const { store, reconciler, log } = this.deps;
    while (this.running) {
      const key = await this.queue.next();
      if (key === undefined) return;
      const [namespace, name] = key.split("/") as [string, string];
      let after = 0;
      try {
        const cluster = await store.getCluster(namespace, name);
        if (cluster !== undefined) {
          this.passes++;
          const res = await reconciler.reconcile(cluster);
          after = res.requeueAfterMs;
        }
        this.failures.delete(key);
      } catch (err) {
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        after = this.options.errorBackoffMs * Math.min(16, 2 ** (n - 1));
        log.warn("reconcile failed", { cluster: key, error: apiErrorText(err), retryInMs: after });
      } finally {
        this.queue.done(key);
      }
      if (after > 0 && this.running) this.queue.addAfter(key, after);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutdown();
    await Promise.all(this.informers.map((i) => i.stop().catch(() => {})));
  }
}

export type { EtcdCluster };
