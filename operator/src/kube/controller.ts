/**
 * The EtcdCluster controller: informers on EtcdClusters and on the operator's member pods and
 * PVCs (which name their cluster in a label) queue cluster keys; each pass reads the cluster
 * afresh and runs one reconcile pass (cluster/reconciler.ts). The queue, workers, back-off,
 * resync and watch restarts are keyed-controller.ts's. Runs only while this replica leads (see
 * main.ts).
 */
import { CoreV1Api, CustomObjectsApi, makeInformer, type KubeConfig } from "@kubernetes/client-node";
import { CLUSTER_PLURAL, GROUP, VERSION, type EtcdCluster } from "../api/v1alpha1.js";
import { LABEL_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY } from "../cluster/naming.js";
import type { Reconciler } from "../cluster/reconciler.js";
import type { Log } from "../logger.js";
import { KeyedController, type AnyInformer, type ControllerOptions, type PassObserver } from "./keyed-controller.js";
import type { KubeClusterStore } from "./kube-cluster-store.js";

export type { ControllerOptions };

export interface ControllerDeps {
  kubeConfig: KubeConfig;
  store: KubeClusterStore;
  reconciler: Reconciler;
  log: Log;
  observer?: PassObserver;
}

export class Controller extends KeyedController<EtcdCluster> {
  constructor(options: ControllerOptions, deps: ControllerDeps) {
    super(options, {
      kubeConfig: deps.kubeConfig,
      log: deps.log,
      ...(deps.observer ? { observer: deps.observer } : {}),
      source: {
        kind: "cluster",
        informers: clusterInformers,
        get: (namespace, name) => deps.store.getCluster(namespace, name),
        reconcile: async (cluster) => {
          const r = await deps.reconciler.reconcile(cluster);
          return { requeueAfterMs: r.requeueAfterMs, step: r.step.kind };
        },
      },
    });
  }
}

function clusterInformers(kubeConfig: KubeConfig, ns: string): { primary: AnyInformer; owned: Array<{ informer: AnyInformer; ownerLabel: string }> } {
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
  const prefix = ns ? `/namespaces/${ns}` : "";
  const primary = makeInformer(
    kubeConfig,
    `/apis/${GROUP}/${VERSION}${prefix}/${CLUSTER_PLURAL}`,
    () =>
      (ns
        ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: CLUSTER_PLURAL })
        : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: CLUSTER_PLURAL })) as never,
  ) as AnyInformer;
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
  return { primary, owned: [{ informer: pods, ownerLabel: LABEL_CLUSTER }, { informer: pvcs, ownerLabel: LABEL_CLUSTER }] };
}

export type { EtcdCluster };
