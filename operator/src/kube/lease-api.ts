/** LeaseApi (leader-election.ts) over the coordination.k8s.io/v1 API. */
import { CoordinationV1Api, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import type { LeaseApi } from "./leader-election.js";
import { isNotFound } from "./kube-cluster-store.js";

export class KubeLeaseApi implements LeaseApi {
  private readonly api: CoordinationV1Api;

  constructor(deps: { kubeConfig: KubeConfig }) {
    this.api = deps.kubeConfig.makeApiClient(CoordinationV1Api);
  }

  async read(namespace: string, name: string): Promise<V1Lease | undefined> {
    try {
      return await this.api.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  create(namespace: string, lease: V1Lease): Promise<V1Lease> {
    return this.api.createNamespacedLease({ namespace, body: lease });
  }

  replace(namespace: string, name: string, lease: V1Lease): Promise<V1Lease> {
    return this.api.replaceNamespacedLease({ namespace, name, body: lease });
  }
}
