/**
 * The root password of a cluster with spec.auth (the reconciler's RootCredentials):
 * spec.auth.rootPasswordSecret names the user's Secret (key `password`; missing or empty is a
 * problem the cluster waits on, it is never invented); without one the operator keeps a generated
 * password in the Secret `<cluster>-root` (key `password`), made once and owned by the
 * EtcdCluster. Backup Jobs read the same Secret through their environment (rootSecretOf).
 */
import { randomBytes } from "node:crypto";
import type { EtcdCluster } from "../api/v1alpha1.js";
import type { RootCredentials } from "../cluster/reconciler.js";
import type { SecretStore } from "../tls/operator-tls.js";

export const PASSWORD_KEY = "password";

/** The Secret the operator generates the root password into. */
export function generatedRootSecretName(cluster: string): string {
  return `${cluster}-root`;
}

/** The Secret holding a cluster's root password (the user's, else the generated one). */
export function rootSecretOf(spec: EtcdCluster["spec"], cluster: string): string {
  return spec.auth?.rootPasswordSecret || generatedRootSecretName(cluster);
}

export class SecretRootCredentials implements RootCredentials {
  constructor(
    private readonly options: { passwordBytes?: number },
    private readonly deps: { secrets: SecretStore },
  ) {}

  async prepare(cluster: EtcdCluster): Promise<{ password: string } | { problem: string }> {
    const ns = cluster.metadata.namespace;
    const name = rootSecretOf(cluster.spec, cluster.metadata.name);
    const secret = await this.deps.secrets.getSecret(ns, name);
    const password = secret?.data[PASSWORD_KEY];
    if (password) return { password };
    if (cluster.spec.auth?.rootPasswordSecret) {
      return { problem: `Secret ${name} (spec.auth.rootPasswordSecret) ${secret === undefined ? "does not exist" : `has no "${PASSWORD_KEY}"`}` };
    }
    const generated = randomBytes(this.options.passwordBytes ?? 24).toString("base64url");
    await this.deps.secrets.putSecret(cluster, name, { data: { [PASSWORD_KEY]: generated }, annotations: {} });
    return { password: generated };
  }
}
