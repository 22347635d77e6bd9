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
 * - the CA itself is rotated before it expires (`caRenewBeforeMs`) in three rolls (see
 *   nextCaAction in cluster/tls-layout.ts): TrustBoth (the new CA is trusted beside the old),
 *   Reissued (certificates from the new CA, a new epoch), then Stable with the old CA dropped.
 *   The CA Secret records the phase (ANN_CA_PHASE, ANN_CA_PHASE_SINCE) and the other CA
 *   (`next.crt`/`next.key` while TrustBoth, `old.crt` while Reissued); the `ca.crt` of member and
 *   client Secrets is the trust bundle (the signing CA first, then the other one).
 *
 * Secrets it makes are owned by the EtcdCluster (deleted with it).
 */
import { createHash } from "node:crypto";
import type { EtcdCluster } from "../api/v1alpha1.js";
import type { ClientTls, TlsProvider, TlsState } from "../cluster/reconciler.js";
import {
  type CaPhase,
  type CertEpoch,
  caPhaseOf,
  caSecretName,
  nextCaAction,
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
/** On the CA Secret: the rotation phase (Stable, TrustBoth, Reissued) and since when. */
export const ANN_CA_PHASE = "etcd.etcd-ts.io/ca-rotation-phase";
export const ANN_CA_PHASE_SINCE = "etcd.etcd-ts.io/ca-rotation-since";

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
  /** The CA's rotation starts when it has less than this left (default: a tenth of caValidityMs). */
  caRenewBeforeMs?: number;
  /** Validity of member and operator client certificates (one epoch). */
  certValidityMs: number;
  /** A new epoch starts when the current one has less than this left. */
  renewBeforeMs: number;
}

export const DEFAULT_TLS_OPTIONS: Required<Omit<OperatorTlsOptions, "clusterDomain">> = {
  caValidityMs: 10 * 365 * 86_400_000,
  caRenewBeforeMs: 365 * 86_400_000,
  certValidityMs: 90 * 86_400_000,
  renewBeforeMs: 30 * 86_400_000,
};

export interface OperatorTlsDeps {
  secrets: SecretStore;
  log: { info(msg: string, fields?: Record<string, unknown>): void };
}

/** The CA side of one pass: who signs, what is trusted (PEM bundle, signer first), the phase. */
interface CaState {
  ca: KeyPairPem;
  bundle: string;
  /** The other CA's fingerprint while rotating. */
  other?: string;
  phase: CaPhase;
  epoch: CertEpoch;
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

  async prepare(cluster: EtcdCluster, members: string[], now: Date, rolledOut?: (material: string) => boolean): Promise<TlsState> {
    let state = await this.materialOf(cluster, members, now);
    // A CA rotation moves on only once the current phase's material runs everywhere.
    const caState = state.caState;
    if (caState !== undefined && state.problem === undefined) {
      const action = nextCaAction(caState.phase, certificateFacts(caState.ca.certPem).notAfter.getTime(), now.getTime(), this.caRenewBeforeMs(), rolledOut?.(state.material) ?? false);
      if (action !== undefined) {
        await this.rotateCa(cluster, action, now);
        state = await this.materialOf(cluster, members, now);
      }
    }
    const { caState: ca, ...out } = state;
    if (ca !== undefined) out.ca = { notAfter: certificateFacts(ca.ca.certPem).notAfter.getTime(), phase: ca.phase };
    return out;
  }

  private caRenewBeforeMs(): number {
    return this.options.caRenewBeforeMs ?? Math.floor(this.options.caValidityMs / 10);
  }

  private async materialOf(cluster: EtcdCluster, members: string[], now: Date): Promise<TlsState & { caState?: CaState }> {
    const s = tlsSettings(cluster.spec);
    const parts: string[] = [];
    const problems: string[] = [];
    let client: ClientTls | undefined;
    let caState: CaState | undefined;
    if (usesOperatorCa(s)) {
      caState = await this.ensureCa(cluster, now);
      const { ca, epoch } = caState;
      parts.push(`ca=${certificateFacts(ca.certPem).fingerprint}`, `epoch=${epoch.epoch}`);
      if (caState.other !== undefined) parts.push(`trust=${caState.other}`);
      for (const m of members) await this.ensureMember(cluster, m, caState, now);
      if (s.client?.kind === "operator") client = await this.ensureOperatorClient(cluster, caState, now);
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
    return {
      material: sha(...parts),
      ...(problems.length > 0 ? { problem: problems.join("; ") } : {}),
      ...(client ? { client } : {}),
      ...(caState ? { caState } : {}),
    };
  }

  /** One step of the CA rotation on the CA Secret (see nextCaAction). */
  private async rotateCa(cluster: EtcdCluster, action: "start" | "reissue" | "drop-old", now: Date): Promise<void> {
    const ns = cluster.metadata.namespace;
    const name = caSecretName(cluster.metadata.name);
    const cur = (await this.deps.secrets.getSecret(ns, name))!;
    const d = cur.data;
    const at = { [ANN_CA_PHASE_SINCE]: now.toISOString() };
    let data: Record<string, string>;
    let annotations: Record<string, string>;
    if (action === "start") {
      const next = await issueCa(`${cluster.metadata.name}.${ns} etcd-ts CA`, new Date(now.getTime() - 3_600_000), new Date(now.getTime() + this.options.caValidityMs));
      data = { ...d, "next.crt": next.certPem, "next.key": next.keyPem };
      annotations = { ...cur.annotations, ...at, [ANN_CA_PHASE]: "TrustBoth" };
    } else if (action === "reissue") {
      // The new CA signs from now on, under a new epoch bounded by its own expiry.
      const next = { certPem: d["next.crt"]!, keyPem: d["next.key"]! };
      const epoch = Number(cur.annotations[ANN_EPOCH] ?? "0") + 1;
      const notAfter = Math.min(now.getTime() + this.options.certValidityMs, certificateFacts(next.certPem).notAfter.getTime());
      data = { "ca.crt": next.certPem, "ca.key": next.keyPem, "old.crt": d["ca.crt"]! };
      annotations = { ...cur.annotations, ...at, [ANN_CA_PHASE]: "Reissued", [ANN_EPOCH]: String(epoch), [ANN_EPOCH_NOT_AFTER]: new Date(notAfter).toISOString() };
    } else {
      data = { "ca.crt": d["ca.crt"]!, "ca.key": d["ca.key"]! };
      annotations = { ...cur.annotations, ...at, [ANN_CA_PHASE]: "Stable" };
    }
    await this.deps.secrets.putSecret(cluster, name, { data, annotations });
    this.deps.log.info("CA rotation", { cluster: `${ns}/${cluster.metadata.name}`, action, phase: annotations[ANN_CA_PHASE] });
  }

  private async ensureCa(cluster: EtcdCluster, now: Date): Promise<CaState> {
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
    const phase = caPhaseOf(existing?.annotations[ANN_CA_PHASE]);
    const otherPem = phase === "TrustBoth" ? existing?.data["next.crt"] : phase === "Reissued" ? existing?.data["old.crt"] : undefined;
    const bundle = otherPem ? `${ca.certPem.trimEnd()}\n${otherPem.trimEnd()}\n` : ca.certPem;
    const rest = { ca, bundle, phase, ...(otherPem ? { other: certificateFacts(otherPem).fingerprint } : {}) };
    const caNotAfter = certificateFacts(ca.certPem).notAfter.getTime();
    const next = nextEpoch(current, now.getTime(), this.options.certValidityMs, this.options.renewBeforeMs, caNotAfter);
    if (next !== undefined || existing === undefined) {
      const epoch = next ?? current!;
      await this.deps.secrets.putSecret(cluster, name, {
        data: existing?.data["ca.crt"] && existing.data["ca.key"] ? existing.data : { "ca.crt": ca.certPem, "ca.key": ca.keyPem },
        annotations: { ...(existing?.annotations ?? { [ANN_CA_PHASE]: "Stable" }), [ANN_EPOCH]: String(epoch.epoch), [ANN_EPOCH_NOT_AFTER]: new Date(epoch.notAfter).toISOString() },
      });
      if (current !== undefined) this.deps.log.info("certificate epoch renewed", { cluster: `${ns}/${cluster.metadata.name}`, epoch: epoch.epoch });
      return { ...rest, epoch };
    }
    return { ...rest, epoch: current! };
  }

  /** Issues `name`'s Secret unless it holds a certificate of this epoch from this CA. */
  private async ensureLeaf(cluster: EtcdCluster, name: string, caState: CaState, now: Date, req: { commonName: string; dnsNames?: string[]; usages: ("server" | "client")[] }): Promise<KeyPairPem> {
    const ns = cluster.metadata.namespace;
    const { ca, epoch, bundle } = caState;
    const existing = await this.deps.secrets.getSecret(ns, name);
    // The bundle lists the signing CA first: a certificate of this epoch under this bundle is from the signer.
    if (existing && existing.annotations[ANN_EPOCH] === String(epoch.epoch) && existing.data["ca.crt"] === bundle && existing.data["tls.crt"] && existing.data["tls.key"]) {
      return { certPem: existing.data["tls.crt"], keyPem: existing.data["tls.key"] };
    }
    const leaf = await issueLeaf(ca, {
      ...req,
      ipAddresses: req.usages.includes("server") ? ["127.0.0.1"] : [],
      notBefore: new Date(now.getTime() - 3_600_000),
      notAfter: new Date(epoch.notAfter),
    });
    await this.deps.secrets.putSecret(cluster, name, {
      data: { "tls.crt": leaf.certPem, "tls.key": leaf.keyPem, "ca.crt": bundle },
      annotations: { [ANN_EPOCH]: String(epoch.epoch) },
    });
    return leaf;
  }

  private async ensureMember(cluster: EtcdCluster, member: string, caState: CaState, now: Date): Promise<void> {
    const ref = { name: cluster.metadata.name, namespace: cluster.metadata.namespace };
    await this.ensureLeaf(cluster, memberTlsSecretName(member), caState, now, {
      commonName: member,
      dnsNames: memberDnsNames(ref, member, this.options.clusterDomain),
      usages: ["server", "client"],
    });
  }

  private async ensureOperatorClient(cluster: EtcdCluster, caState: CaState, now: Date): Promise<ClientTls> {
    const leaf = await this.ensureLeaf(cluster, operatorClientSecretName(cluster.metadata.name), caState, now, { commonName: "root", usages: ["client"] });
    return { caPem: caState.bundle, certPem: leaf.certPem, keyPem: leaf.keyPem };
  }
}
