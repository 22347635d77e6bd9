/**
 * The Kubernetes objects of one EtcdCluster, built as plain objects (pure): a pod and a PVC per
 * member, a headless Service (peer DNS names, SRV records, publishNotReadyAddresses), a client
 * Service, and a PodDisruptionBudget that keeps a quorum of voters. Every object is owned by the
 * EtcdCluster (a controller owner reference), so deleting the cluster deletes them.
 */
import type { EtcdCluster } from "../api/v1alpha1.js";
import { API_VERSION, CLUSTER_KIND } from "../api/v1alpha1.js";
import {
  ANN_INITIAL_CLUSTER,
  ANN_INITIAL_STATE,
  ANN_CLIENT_TLS,
  ANN_FORCE_NEW_CLUSTER,
  ANN_MEMBER_ID,
  ANN_SPEC_HASH,
  CLIENT_PORT,
  DATA_DIR,
  DATA_MOUNT,
  LABEL_MEMBER,
  PEER_PORT,
  clientServiceName,
  clientURL,
  headlessServiceName,
  pdbName,
  peerURL,
  pvcName,
  selectorLabels,
} from "./naming.js";
import { hashJson } from "./spec-hash.js";
import { METRICS_PORT, tlsArgs, tlsSettings, tlsVolumes } from "./tls-layout.js";

export interface ManifestOptions {
  clusterDomain: string;
  /** Image used when spec.image is empty. */
  defaultImage: string;
  /** The command that starts the etcd-ts server in the image (flags are appended). */
  serverCommand: string[];
  /**
   * The command that waits for SRV records in the image (name and count are appended): a DNS SRV
   * bootstrap's init container. Default: the image's entrypoint in wait-srv mode.
   */
  waitSrvCommand?: string[];
}

/**
 * The hash of everything in the spec that shapes a member's pod but not its identity: the image
 * (spec.image or the operator's default), pull policy, etcd options, pod template, TLS settings,
 * the server command, and `material` (a fingerprint of the certificates mounted, so a rotation
 * rolls the members). Size, storage, backup and bootstrap settings are not in it: changing them
 * never restarts a member. 16 hex digits of spec-hash.ts's hashJson; deterministic.
 */
export function podSpecHash(c: EtcdCluster, o: ManifestOptions, material = ""): string {
  const s = c.spec;
  const relevant = {
    image: s.image || o.defaultImage,
    imagePullPolicy: s.imagePullPolicy ?? null,
    options: s.options ?? {},
    podTemplate: s.podTemplate ?? {},
    tls: s.tls ?? null,
    serverCommand: o.serverCommand,
    material,
  };
  return hashJson(relevant).slice(0, 16);
}

export const DEFAULT_WAIT_SRV_COMMAND = ["node", "/app/operator/bin/entrypoint.js", "wait-srv"];

/** The SRV name etcd's --discovery-srv looks up for this cluster's peers. */
export function peerSrvName(c: EtcdCluster, clusterDomain: string): string {
  const service = tlsSettings(c.spec).peer ? "etcd-server-ssl" : "etcd-server";
  return `_${service}._tcp.${headlessServiceName(c.metadata.name)}.${c.metadata.namespace}.svc.${clusterDomain}`;
}

export interface MemberStart {
  member: string;
  initialCluster: string;
  state: "new" | "existing";
  memberId?: string;
  /**
   * Start this once with --force-new-cluster (recovery from a permanent loss of quorum; the pod
   * carries ANN_FORCE_NEW_CLUSTER so the operator knows to replace it by a normal one after).
   */
  forceNewCluster?: boolean;
}

type Obj = Record<string, unknown>;

export function ownerReference(c: EtcdCluster): Obj {
  return {
    apiVersion: API_VERSION,
    kind: CLUSTER_KIND,
    name: c.metadata.name,
    uid: c.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

function meta(c: EtcdCluster, name: string, extraLabels: Record<string, string> = {}, annotations?: Record<string, string>): Obj {
  return {
    name,
    namespace: c.metadata.namespace,
    labels: { ...selectorLabels(c.metadata.name), ...extraLabels },
    ...(annotations && Object.keys(annotations).length > 0 ? { annotations } : {}),
    ownerReferences: [ownerReference(c)],
  };
}

/** The start records kept on a member's volume (or pod): what it was first started with. */
export function startAnnotations(s: MemberStart): Record<string, string> {
  return {
    [ANN_INITIAL_CLUSTER]: s.initialCluster,
    [ANN_INITIAL_STATE]: s.state,
    ...(s.memberId !== undefined ? { [ANN_MEMBER_ID]: s.memberId } : {}),
  };
}

/** The etcd flags of one member. */
export function memberArgs(c: EtcdCluster, s: MemberStart, o: ManifestOptions): string[] {
  const ref = { name: c.metadata.name, namespace: c.metadata.namespace };
  const tls = tlsSettings(c.spec);
  const peerScheme = tls.peer ? "https" : "http";
  const clientScheme = tls.client ? "https" : "http";
  const args = [
    `--name=${s.member}`,
    `--data-dir=${DATA_DIR}`,
    `--listen-peer-urls=${peerScheme}://0.0.0.0:${PEER_PORT}`,
    `--listen-client-urls=${clientScheme}://0.0.0.0:${CLIENT_PORT}`,
    `--advertise-client-urls=${clientURL(ref, s.member, o.clusterDomain, tls.client !== undefined)}`,
    `--initial-advertise-peer-urls=${peerURL(ref, s.member, o.clusterDomain, tls.peer !== undefined)}`,
    `--initial-cluster-token=${c.metadata.name}-${c.metadata.uid ?? "cluster"}`,
    `--initial-cluster-state=${s.state}`,
  ];
  if (s.state === "new" && c.spec.bootstrap?.discovery === "DNSSRV") {
    args.push(`--discovery-srv=${headlessServiceName(c.metadata.name)}.${c.metadata.namespace}.svc.${o.clusterDomain}`);
  } else {
    args.push(`--initial-cluster=${s.initialCluster}`);
  }
  args.push(...tlsArgs(tls));
  for (const [k, v] of Object.entries(c.spec.options ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    args.push(`--${k}=${v}`);
  }
  if (s.forceNewCluster === true) args.push("--force-new-cluster");
  return args;
}

/** A member's pod; `specHash` (podSpecHash of the same spec) is recorded on it for rolling. */
export function memberPod(c: EtcdCluster, s: MemberStart, o: ManifestOptions, specHash = podSpecHash(c, o)): Obj {
  const memory = c.spec.storage?.medium === "Memory";
  const tpl = c.spec.podTemplate ?? {};
  const tls = tlsSettings(c.spec);
  const tlsMounts = tlsVolumes(tls, s.member);
  const annotations = {
    ...(tpl.metadata?.annotations ?? {}),
    ...(memory ? startAnnotations(s) : {}),
    [ANN_SPEC_HASH]: specHash,
    ...(tls.client ? { [ANN_CLIENT_TLS]: "true" } : {}),
    ...(s.forceNewCluster === true && s.memberId !== undefined ? { [ANN_FORCE_NEW_CLUSTER]: s.memberId } : {}),
  };
  const srv = s.state === "new" && c.spec.bootstrap?.discovery === "DNSSRV";
  const image = c.spec.image || o.defaultImage;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: meta(c, s.member, { ...(tpl.metadata?.labels ?? {}), [LABEL_MEMBER]: s.member }, annotations),
    spec: {
      hostname: s.member,
      subdomain: headlessServiceName(c.metadata.name),
      restartPolicy: "Always",
      ...(tpl.nodeSelector ? { nodeSelector: tpl.nodeSelector } : {}),
      ...(tpl.tolerations ? { tolerations: tpl.tolerations } : {}),
      ...(tpl.affinity ? { affinity: tpl.affinity } : {}),
      ...(tpl.priorityClassName ? { priorityClassName: tpl.priorityClassName } : {}),
      ...(srv
        ? {
            // Every member of a new cluster must be in DNS before any reads the SRV records.
            initContainers: [
              {
                name: "wait-srv",
                image,
                ...(c.spec.imagePullPolicy ? { imagePullPolicy: c.spec.imagePullPolicy } : {}),
                command: [...(o.waitSrvCommand ?? DEFAULT_WAIT_SRV_COMMAND), peerSrvName(c, o.clusterDomain), String(c.spec.size)],
              },
            ],
          }
        : {}),
      containers: [
        {
          name: "etcd",
          image,
          ...(c.spec.imagePullPolicy ? { imagePullPolicy: c.spec.imagePullPolicy } : {}),
          command: [...o.serverCommand, ...memberArgs(c, s, o)],
          ports: [
            { name: "client", containerPort: CLIENT_PORT },
            { name: "peer", containerPort: PEER_PORT },
            ...(tls.client ? [{ name: "metrics", containerPort: METRICS_PORT }] : []),
          ],
          ...(tpl.env ? { env: tpl.env } : {}),
          ...(tpl.resources ? { resources: tpl.resources } : {}),
          // A member that exits on damaged data says so in its log: the tail becomes the pod's
          // termination message, which the operator reads to replace the member.
          terminationMessagePolicy: "FallbackToLogsOnError",
          readinessProbe: {
            // With client TLS the client port wants a certificate: /health is probed on the plain metrics port.
            httpGet: { path: "/health", port: tls.client ? METRICS_PORT : CLIENT_PORT },
            periodSeconds: 5,
            failureThreshold: 3,
          },
          volumeMounts: [{ name: "data", mountPath: DATA_MOUNT }, ...tlsMounts.mounts],
        },
      ],
      volumes: [
        memory
          ? { name: "data", emptyDir: { medium: "Memory" } }
          : { name: "data", persistentVolumeClaim: { claimName: pvcName(s.member) } },
        ...tlsMounts.volumes,
      ],
    },
  };
}

export function memberPvc(c: EtcdCluster, s: MemberStart): Obj {
  const st = c.spec.storage ?? {};
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: meta(c, pvcName(s.member), { [LABEL_MEMBER]: s.member }, startAnnotations(s)),
    spec: {
      accessModes: ["ReadWriteOnce"],
      ...(st.storageClassName ? { storageClassName: st.storageClassName } : {}),
      resources: { requests: { storage: st.size ?? "1Gi" } },
    },
  };
}

/**
 * The headless Service: per-member DNS names, and SRV records for DNS discovery. Its port names
 * are etcd's SRV service names: `etcd-server-ssl` with peer TLS (what --discovery-srv looks up for
 * https peers), `etcd-client-ssl` with client TLS.
 */
export function headlessService(c: EtcdCluster): Obj {
  const tls = tlsSettings(c.spec);
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(c, headlessServiceName(c.metadata.name)),
    spec: {
      clusterIP: "None",
      publishNotReadyAddresses: true,
      selector: selectorLabels(c.metadata.name),
      ports: [
        { name: tls.peer ? "etcd-server-ssl" : "etcd-server", port: PEER_PORT, targetPort: PEER_PORT },
        { name: tls.client ? "etcd-client-ssl" : "etcd-client", port: CLIENT_PORT, targetPort: CLIENT_PORT },
      ],
    },
  };
}

export function clientService(c: EtcdCluster): Obj {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(c, clientServiceName(c.metadata.name)),
    spec: {
      selector: selectorLabels(c.metadata.name),
      ports: [{ name: "client", port: CLIENT_PORT, targetPort: CLIENT_PORT }],
    },
  };
}

/** A PodDisruptionBudget keeping a quorum of `voters` available (policy/v1beta1 on Kubernetes < 1.21). */
export function podDisruptionBudget(c: EtcdCluster, minAvailable: number, apiVersion: string): Obj {
  return {
    apiVersion,
    kind: "PodDisruptionBudget",
    metadata: meta(c, pdbName(c.metadata.name)),
    spec: { minAvailable, selector: { matchLabels: selectorLabels(c.metadata.name) } },
  };
}
