/**
 * TLS for a cluster's client and peer ports, as the pods see it (pure): which side uses which
 * certificates, the Secrets' names, where they are mounted, the etcd flags, the names a member's
 * certificate must carry, and when the operator's certificates are renewed.
 *
 * Each side (spec.tls.client, spec.tls.peer) is either operator-issued (the default once the
 * side is named) or a user's Secret (`secretName`, keys tls.crt, tls.key, ca.crt; its
 * certificate must name every member's DNS name, e.g. `*.<cluster>.<namespace>.svc.<domain>`).
 * Operator-issued: a CA per cluster in the Secret `<cluster>-ca` (ca.crt, ca.key), a certificate
 * per member in `<member>-tls` (server and client use: it serves the client and peer ports and
 * dials peers), and the operator's own client certificate in `<cluster>-operator-client`.
 */
import type { EtcdClusterSpec } from "../api/v1alpha1.js";
import { type ClusterRef, clientServiceName, headlessServiceName, memberHost } from "./naming.js";

export const TLS_MOUNT = "/etc/etcd-ts/tls";
/** Plain-HTTP /health and /metrics for the kubelet's probe when the client port wants certificates. */
export const METRICS_PORT = 2381;

export type TlsSource = { kind: "operator" } | { kind: "secret"; secretName: string };

export interface TlsSettings {
  client?: TlsSource & { clientCertAuth: boolean };
  peer?: TlsSource;
}

export function tlsSettings(spec: EtcdClusterSpec): TlsSettings {
  const source = (side: { operatorIssued?: boolean; secretName?: string } | undefined): TlsSource | undefined => {
    if (side === undefined) return undefined;
    if (side.secretName) return { kind: "secret", secretName: side.secretName };
    if (side.operatorIssued === false) return undefined;
    return { kind: "operator" };
  };
  const out: TlsSettings = {};
  const client = source(spec.tls?.client);
  if (client) out.client = { ...client, clientCertAuth: spec.tls?.client?.clientCertAuth ?? true };
  const peer = source(spec.tls?.peer);
  if (peer) out.peer = peer;
  return out;
}

export function usesOperatorCa(s: TlsSettings): boolean {
  return s.client?.kind === "operator" || s.peer?.kind === "operator";
}

export function caSecretName(cluster: string): string {
  return `${cluster}-ca`;
}

export function memberTlsSecretName(member: string): string {
  return `${member}-tls`;
}

export function operatorClientSecretName(cluster: string): string {
  return `${cluster}-operator-client`;
}

/** The directory a side's certificate, key and CA are mounted in. */
export function tlsDir(source: TlsSource, side: "client" | "peer"): string {
  return source.kind === "operator" ? `${TLS_MOUNT}/member` : `${TLS_MOUNT}/${side}`;
}

/** etcd's TLS flags for the settings (none without TLS). */
export function tlsArgs(s: TlsSettings): string[] {
  const args: string[] = [];
  if (s.client) {
    const d = tlsDir(s.client, "client");
    args.push(`--cert-file=${d}/tls.crt`, `--key-file=${d}/tls.key`);
    // etcd requires client certificates whenever the client port has a trusted CA, so without
    // clientCertAuth the CA stays out (clients then need none).
    if (s.client.clientCertAuth) args.push(`--trusted-ca-file=${d}/ca.crt`, "--client-cert-auth=true");
    args.push(`--listen-metrics-urls=http://0.0.0.0:${METRICS_PORT}`);
  }
  if (s.peer) {
    const d = tlsDir(s.peer, "peer");
    args.push(`--peer-cert-file=${d}/tls.crt`, `--peer-key-file=${d}/tls.key`, `--peer-trusted-ca-file=${d}/ca.crt`, "--peer-client-cert-auth=true");
  }
  return args;
}

/** Flags spec.options may not set when TLS is on (the operator sets them from spec.tls). */
export const TLS_FLAGS = [
  "cert-file",
  "key-file",
  "trusted-ca-file",
  "client-cert-auth",
  "auto-tls",
  "peer-cert-file",
  "peer-key-file",
  "peer-trusted-ca-file",
  "peer-client-cert-auth",
  "peer-auto-tls",
  "listen-metrics-urls",
];

/** Secret volumes (and their mounts) a member's pod needs. */
export function tlsVolumes(s: TlsSettings, member: string): { volumes: Record<string, unknown>[]; mounts: Record<string, unknown>[] } {
  const volumes: Record<string, unknown>[] = [];
  const mounts: Record<string, unknown>[] = [];
  const add = (name: string, secretName: string, dir: string) => {
    if (volumes.some((v) => v.name === name)) return;
    volumes.push({ name, secret: { secretName, defaultMode: 0o400 } });
    mounts.push({ name, mountPath: dir, readOnly: true });
  };
  for (const side of ["client", "peer"] as const) {
    const src = s[side];
    if (src === undefined) continue;
    if (src.kind === "operator") add("tls-member", memberTlsSecretName(member), tlsDir(src, side));
    else add(`tls-${side}`, src.secretName, tlsDir(src, side));
  }
  return { volumes, mounts };
}

/** The DNS names a member's certificate carries: its own names under the headless Service and the client Service's names. */
export function memberDnsNames(ref: ClusterRef, member: string, clusterDomain: string): string[] {
  const host = memberHost(ref, member, clusterDomain);
  const svc = headlessServiceName(ref.name);
  const client = clientServiceName(ref.name);
  return [
    host,
    `${member}.${svc}.${ref.namespace}.svc`,
    `${member}.${svc}.${ref.namespace}`,
    `${member}.${svc}`,
    member,
    `${client}.${ref.namespace}.svc.${clusterDomain}`,
    `${client}.${ref.namespace}.svc`,
    `${client}.${ref.namespace}`,
    client,
    `${svc}.${ref.namespace}.svc.${clusterDomain}`,
    "localhost",
  ];
}

/**
 * The operator's certificates belong to an epoch: every member certificate and the operator's
 * client certificate of one epoch expire together at `notAfter`. A new epoch starts when the
 * current one has less than `renewBeforeMs` left (or there is none): its certificates are written
 * to the Secrets, and the spec hash (which carries the epoch) rolls the members one at a time.
 * The CA outlives many epochs.
 */
export interface CertEpoch {
  epoch: number;
  notAfter: number;
}

export function nextEpoch(current: CertEpoch | undefined, now: number, validityMs: number, renewBeforeMs: number, caNotAfter: number): CertEpoch | undefined {
  if (current !== undefined && current.notAfter - now > renewBeforeMs) return undefined;
  return { epoch: (current?.epoch ?? 0) + 1, notAfter: Math.min(now + validityMs, caNotAfter) };
}

/**
 * Rotation of the operator-issued CA, before it expires and without downtime, in three rolls:
 *
 * - Stable: one CA signs and is trusted. When it has `renewBeforeMs` left, a new CA is made and
 *   the phase becomes TrustBoth ("start");
 * - TrustBoth: members and the operator trust both CAs; certificates still come from the old
 *   one. Once every member runs with that (rolled out), the phase becomes Reissued ("reissue");
 * - Reissued: certificates come from the new CA (a new epoch), both are still trusted, so a
 *   member not yet rolled (old certificate, trusts both) and a rolled one (new certificate)
 *   accept each other. Once rolled out, the old CA is dropped ("drop-old"): Stable again.
 *
 * Each phase changes what the pods mount, hence the spec hash, hence a roll (one member at a
 * time, quorum-gated, the leader last).
 */
export type CaPhase = "Stable" | "TrustBoth" | "Reissued";

export type CaRotationAction = "start" | "reissue" | "drop-old";

export function caPhaseOf(v: string | undefined): CaPhase {
  return v === "TrustBoth" || v === "Reissued" ? v : "Stable";
}

/** The rotation's next move, or undefined to stay. `rolledOut`: every member runs the current phase's material. */
export function nextCaAction(phase: CaPhase, caNotAfter: number, now: number, renewBeforeMs: number, rolledOut: boolean): CaRotationAction | undefined {
  switch (phase) {
    case "Stable":
      return caNotAfter - now <= renewBeforeMs ? "start" : undefined;
    case "TrustBoth":
      return rolledOut ? "reissue" : undefined;
    case "Reissued":
      return rolledOut ? "drop-old" : undefined;
  }
}
