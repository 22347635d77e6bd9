/**
 * The TlsProvider the reconciler calls each pass (see cluster/tls-layout.ts for the layout):
 *
 * - operator-issued sides: the cluster's CA in `<cluster>-ca` (made once, valid `caValidityMs`),
 *   a certificate per member in `<member>-tls` and the operator's client certificate in
 *   `<cluster>-operator-client`, all of the CA's current epoch (annotations on the CA Secret).
 *   When the epoch nears its end (`renewBeforeMs`) a new one starts: every member's Secret is
 *   rewritten at once, and since the epoch is part of the spec hash the members are rolled one at
 *   a time by the rolling machinery; old and new certificates share the CA, so members on either
 *   keep talking throughout;
 * - user Secrets (`secretName`): read, checked for tls.crt, tls.key and ca.crt; their
 *   fingerprint goes into the spec hash, so replacing a Secret's certificates rolls the members.
 *   The operator dials with the client Secret's client.crt/client.key when present, else its
 *   tls.crt/tls.key (which then needs client use).
 *
 * Secrets it makes are owned by the EtcdCluster (deleted with it).
 */
import { createHash } from "node:crypto";
import type { EtcdCluster } from "../api/v1alpha1.js";
import type { ClientTls, TlsProvider, TlsState } from "../cluster/reconciler.js";
import {
  type CertEpoch,
  caSecretName,
  memberDnsNames,
  memberTlsSecretName,
  nextEpoch,
  operatorClientSecretName,
  tlsSettings,
  usesOperatorCa,
} from "../cluster/tls-layout.js";
import { certificateFacts, issueCa, issueLeaf, type KeyPairPem } from "./certificates.js";

export const ANN_EPOCH = "etcd.etcd-ts.io/cert-epoch";
export const ANN_EPOCH_NOT_AFTER = "etcd.etcd-ts.io/cert-epoch-not-after";

/** A Secret as the provider sees it: string data (decoded) and annotations. */
export interface StoredSecret {
  data: Record<string, string>;
  annotations: Record<string, string>;
}

/** The Secrets the provider reads and writes. */
export interface SecretStore {
  getSecret(namespace: string, name: string): Promise<StoredSecret | undefined>;
  /** Creates or replaces the Secret (type kubernetes.io/tls when it has tls.crt), owned by `owner`. */
  putSecret(owner: EtcdCluster, name: string, secret: StoredSecret): Promise<void>;
}

export interface OperatorTlsOptions {
  clusterDomain: string;
  caValidityMs: number;
  /** Validity of member and operator client certificates (one epoch). */
  certValidityMs: number;
  /** A new epoch starts when the current one has less than this left. */
  renewBeforeMs: number;
}

export const DEFAULT_TLS_OPTIONS: Omit<OperatorTlsOptions, "clusterDomain"> = {
  caValidityMs: 10 * 365 * 86_400_000,
  certValidityMs: 90 * 86_400_000,
  renewBeforeMs: 30 * 86_400_000,
};

export interface OperatorTlsDeps {
  secrets: SecretStore;
  log: { info(msg: string, fields?: Record<string, unknown>): void };
}

const sha = (...parts: string[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\0");
  return h.digest("hex").slice(0, 16);
};

export class OperatorTls implements TlsProvider {
  constructor(
    private readonly options: OperatorTlsOptions,
    private readonly deps: OperatorTlsDeps,
  ) {}

  async prepare(cluster: EtcdCluster, members: string[], now: Date): Promise<TlsState> {
    const s = tlsSettings(cluster.spec);
    const parts: string[] = [];
    const problems: string[] = [];
    let client: ClientTls | undefined;
    if (usesOperatorCa(s)) {
      const { ca, epoch } = await this.ensureCa(cluster, now);
      parts.push(`ca=${certificateFacts(ca.certPem).fingerprint}`, `epoch=${epoch.epoch}`);
      for (const m of members) await this.ensureMember(cluster, m, ca, epoch, now);
      if (s.client?.kind === "operator") client = await this.ensureOperatorClient(cluster, ca, epoch, now);
    }
    for (const side of ["client", "peer"] as const) {
      const src = s[side];
      if (src?.kind !== "secret") continue;
      const secret = await this.deps.secrets.getSecret(cluster.metadata.namespace, src.secretName);
      const missing = ["tls.crt", "tls.key", "ca.crt"].filter((k) => !secret?.data[k]);
      if (secret === undefined || missing.length > 0) {
        problems.push(`Secret ${src.secretName} (spec.tls.${side}) ${secret === undefined ? "does not exist" : `lacks ${missing.join(", ")}`}`);
        continue;
      }
      const d = secret.data;
      parts.push(`${side}=${sha(d["tls.crt"]!, d["ca.crt"]!)}`);
      if (side === "client") {
        client = { caPem: d["ca.crt"]!, certPem: d["client.crt"] ?? d["tls.crt"]!, keyPem: d["client.key"] ?? d["tls.key"]! };
      }
    }
    return { material: sha(...parts), ...(problems.length > 0 ? { problem: problems.join("; ") } : {}), ...(client ? { client } : {}) };
  }

  private async ensureCa(cluster: EtcdCluster, now: Date): Promise<{ ca: KeyPairPem; epoch: CertEpoch }> {
    const ns = cluster.metadata.namespace;
    const name = caSecretName(cluster.metadata.name);
    const existing = await this.deps.secrets.getSecret(ns, name);
    let ca: KeyPairPem;
    let current: CertEpoch | undefined;
    if (existing?.data["ca.crt"] && existing.data["ca.key"]) {
      ca = { certPem: existing.data["ca.crt"], keyPem: existing.data["ca.key"] };
      const e = Number(existing.annotations[ANN_EPOCH]);
      const na = Date.parse(existing.annotations[ANN_EPOCH_NOT_AFTER] ?? "");
      if (Number.isInteger(e) && e > 0 && Number.isFinite(na)) current = { epoch: e, notAfter: na };
    } else {
      ca = await issueCa(`${cluster.metadata.name}.${ns} etcd-ts CA`, new Date(now.getTime() - 3_600_000), new Date(now.getTime() + this.options.caValidityMs));
      this.deps.log.info("issued CA", { cluster: `${ns}/${cluster.metadata.name}` });
    }
    const caNotAfter = certificateFacts(ca.certPem).notAfter.getTime();
    const next = nextEpoch(current, now.getTime(), this.options.certValidityMs, this.options.renewBeforeMs, caNotAfter);
    if (next !== undefined || existing === undefined) {
      const epoch = next ?? current!;
      await this.deps.secrets.putSecret(cluster, name, {
        data: { "ca.crt": ca.certPem, "ca.key": ca.keyPem },
        annotations: { [ANN_EPOCH]: String(epoch.epoch), [ANN_EPOCH_NOT_AFTER]: new Date(epoch.notAfter).toISOString() },
      });
      if (current !== undefined) this.deps.log.info("certificate epoch renewed", { cluster: `${ns}/${cluster.metadata.name}`, epoch: epoch.epoch });
      return { ca, epoch };
    }
    return { ca, epoch: current! };
  }

  /** Issues `name`'s Secret unless it holds a certificate of this epoch from this CA. */
  private async ensureLeaf(cluster: EtcdCluster, name: string, ca: KeyPairPem, epoch: CertEpoch, now: Date, req: { commonName: string; dnsNames?: string[]; usages: ("server" | "client")[] }): Promise<KeyPairPem> {
    const ns = cluster.metadata.namespace;
    const existing = await this.deps.secrets.getSecret(ns, name);
    if (existing && existing.annotations[ANN_EPOCH] === String(epoch.epoch) && existing.data["ca.crt"] === ca.certPem && existing.data["tls.crt"] && existing.data["tls.key"]) {
      return { certPem: existing.data["tls.crt"], keyPem: existing.data["tls.key"] };
    }
    const leaf = await issueLeaf(ca, {
      ...req,
      ipAddresses: req.usages.includes("server") ? ["127.0.0.1"] : [],
      notBefore: new Date(now.getTime() - 3_600_000),
      notAfter: new Date(epoch.notAfter),
    });
    await this.deps.secrets.putSecret(cluster, name, {
      data: { "tls.crt": leaf.certPem, "tls.key": leaf.keyPem, "ca.crt": ca.certPem },
      annotations: { [ANN_EPOCH]: String(epoch.epoch) },
    });
    return leaf;
  }

  private async ensureMember(cluster: EtcdCluster, member: string, ca: KeyPairPem, epoch: CertEpoch, now: Date): Promise<void> {
    const ref = { name: cluster.metadata.name, namespace: cluster.metadata.namespace };
    await this.ensureLeaf(cluster, memberTlsSecretName(member), ca, epoch, now, {
      commonName: member,
      dnsNames: memberDnsNames(ref, member, this.options.clusterDomain),
      usages: ["server", "client"],
    });
  }

  private async ensureOperatorClient(cluster: EtcdCluster, ca: KeyPairPem, epoch: CertEpoch, now: Date): Promise<ClientTls> {
    const leaf = await this.ensureLeaf(cluster, operatorClientSecretName(cluster.metadata.name), ca, epoch, now, { commonName: "root", usages: ["client"] });
    return { caPem: ca.certPem, certPem: leaf.certPem, keyPem: leaf.keyPem };
  }
}
