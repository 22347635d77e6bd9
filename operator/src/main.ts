/**
 * The operator process: `etcd-ts-operator [flags]`. Loads a kubeconfig (the flag, $KUBECONFIG,
 * or the in-cluster service account), serves /metrics, /healthz and /readyz, elects a leader on a
 * Lease, and while leading runs the EtcdCluster and EtcdBackup controllers. Stops cleanly on
 * SIGTERM/SIGINT: the controllers stop first, then the Lease is handed back.
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { BackupPolicy } from "./backup/backup-policy.js";
import { BackupReconciler } from "./backup/backup-reconciler.js";
import { RestoreHook } from "./backup/restore-hook.js";
import { latestSlot, parseSchedule } from "./backup/schedule.js";
import { SecretRootCredentials } from "./auth/root-credentials.js";
import { Reconciler } from "./cluster/reconciler.js";
import { GrpcEtcdAdmin } from "./etcd/grpc-etcd-admin.js";
import { BackupController } from "./kube/backup-controller.js";
import { Controller } from "./kube/controller.js";
import { KubeBackupStore } from "./kube/kube-backup-store.js";
import { KubeClusterStore, apiErrorText } from "./kube/kube-cluster-store.js";
import { KubeLeaseApi } from "./kube/lease-api.js";
import { DEFAULT_TLS_OPTIONS, OperatorTls } from "./tls/operator-tls.js";
import { LeaseLeaderElector } from "./kube/leader-election.js";
import { jsonLogger, type Level } from "./logger.js";
import { MetricsServer } from "./metrics/metrics-server.js";
import { OperatorMetrics } from "./metrics/operator-metrics.js";

export const USAGE = `etcd-ts-operator: runs EtcdCluster and EtcdBackup resources (etcd.etcd-ts.io/v1alpha1)

  --kubeconfig PATH        kubeconfig (default: $KUBECONFIG, else in-cluster)
  --namespace NS           watch one namespace (default: $WATCH_NAMESPACE, else all)
  --leader-elect BOOL      elect a leader on a Lease (default true)
  --lease-namespace NS     namespace of the Lease (default: $POD_NAMESPACE, else default)
  --lease-name NAME        (default etcd-ts-operator)
  --lease-duration SECONDS how long a leader's Lease lasts without renewal (default 15)
  --identity ID            this replica's name in the Lease (default: $POD_NAME, else host-pid)
  --image IMAGE            member image when spec.image is empty (default: $ETCD_TS_IMAGE)
  --server-command JSON    command starting etcd-ts in the image (default ["node","/app/server/bin/etcd-ts.js"])
  --cluster-domain DOMAIN  (default cluster.local)
  --workers N              clusters reconciled at once (default 2)
  --cert-validity DURATION operator-issued member certificates' lifetime, e.g. 90d, 12h (default 90d)
  --cert-renew-before DUR  start new certificates when this little is left (default 30d)
  --ca-validity DURATION   operator-issued CAs' lifetime (default 3650d)
  --ca-renew-before DUR    start rotating a CA when this little is left (default 365d)
  --defrag-cooldown DUR    a member is not defragmented by a size or fragmentation rule again
                           within this long (default 10m)
  --log-level LEVEL        debug, info, warn, error (default info)
  --metrics-address ADDR   /metrics, /healthz, /readyz on host:port (default :8080; "off": none)
`;

export interface RunningOperator {
  stop(): Promise<void>;
  controller(): Controller | undefined;
  backupController(): BackupController | undefined;
  elector: LeaseLeaderElector | undefined;
  metrics: OperatorMetrics | undefined;
  /** The bound "host:port" of the metrics endpoint, or undefined when off. */
  metricsAddress: string | undefined;
}

export async function startOperator(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<RunningOperator> {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: "string" },
      namespace: { type: "string" },
      "leader-elect": { type: "string" },
      "lease-namespace": { type: "string" },
      "lease-name": { type: "string" },
      "lease-duration": { type: "string" },
      "metrics-address": { type: "string" },
      identity: { type: "string" },
      image: { type: "string" },
      "server-command": { type: "string" },
      "cluster-domain": { type: "string" },
      workers: { type: "string" },
      "cert-validity": { type: "string" },
      "cert-renew-before": { type: "string" },
      "ca-validity": { type: "string" },
      "ca-renew-before": { type: "string" },
      "defrag-cooldown": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return { stop: async () => {}, controller: () => undefined, backupController: () => undefined, elector: undefined, metrics: undefined, metricsAddress: undefined };
  }
  const log = jsonLogger({ level: (values["log-level"] ?? "info") as Level });
  const kc = new KubeConfig();
  const kubeconfig = values.kubeconfig ?? env.KUBECONFIG;
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();

  const image = values.image ?? env.ETCD_TS_IMAGE ?? "etcd-ts:latest";
  const serverCommand = JSON.parse(values["server-command"] ?? '["node","/app/server/bin/etcd-ts.js"]') as string[];
  const store = new KubeClusterStore({ component: "etcd-ts-operator" }, { kubeConfig: kc });
  const etcd = new GrpcEtcdAdmin({ timeoutMs: 3000 });
  const clusterDomain = values["cluster-domain"] ?? "cluster.local";
  const tls = new OperatorTls(
    {
      clusterDomain,
      caValidityMs: values["ca-validity"] ? parseDuration(values["ca-validity"]) : DEFAULT_TLS_OPTIONS.caValidityMs,
      caRenewBeforeMs: values["ca-renew-before"] ? parseDuration(values["ca-renew-before"]) : DEFAULT_TLS_OPTIONS.caRenewBeforeMs,
      certValidityMs: values["cert-validity"] ? parseDuration(values["cert-validity"]) : DEFAULT_TLS_OPTIONS.certValidityMs,
      renewBeforeMs: values["cert-renew-before"] ? parseDuration(values["cert-renew-before"]) : DEFAULT_TLS_OPTIONS.renewBeforeMs,
    },
    { secrets: store, log },
  );
  const backupStore = new KubeBackupStore({ component: "etcd-ts-operator" }, { kubeConfig: kc });
  const backupReconciler = new BackupReconciler(
    { clusterDomain, defaultImage: image, requeueIdleMs: 60_000 },
    { store: backupStore, log, now: () => new Date(), describeError: apiErrorText },
  );
  const reconciler = new Reconciler(
    {
      clusterDomain,
      defaultImage: image,
      serverCommand,
      requeueSteadyMs: 30_000,
      requeueWaitMs: 3_000,
      requeueActionMs: 1_000,
      ...(values["defrag-cooldown"] ? { defragCooldownMs: parseDuration(values["defrag-cooldown"]) } : {}),
    },
    {
      store,
      etcd,
      tls,
      log,
      now: () => new Date(),
      describeError: apiErrorText,
      newMembers: new RestoreHook({}, { backups: backupStore }),
      rootCredentials: new SecretRootCredentials({}, { secrets: store }),
      defragSchedule: { latestSlot: (cron, now) => latestSlot(parseSchedule(cron), now)?.getTime() },
      backupPolicy: new BackupPolicy({}, { store: backupStore }),
    },
  );
  let controller: Controller | undefined;
  let backupController: BackupController | undefined;
  let elector: LeaseLeaderElector | undefined;
  const leaseName = values["lease-name"] ?? "etcd-ts-operator";
  const leaderElect = (values["leader-elect"] ?? "true") !== "false";
  const metrics = new OperatorMetrics(
    { defaultMetrics: true },
    {
      now: () => new Date(),
      view: {
        lease: leaderElect ? leaseName : undefined,
        leading: () => (elector ? elector.isLeader : controller !== undefined),
        queues: () => [controller, backupController].filter((c) => c !== undefined).map((c) => ({ controller: c.kind, depth: c.queue.length })),
        clusters: () => controller?.objects() ?? [],
        backups: () => backupController?.objects() ?? [],
      },
    },
  );
  const metricsAddressFlag = values["metrics-address"] ?? ":8080";
  const metricsServer = metricsAddressFlag === "off" ? undefined : new MetricsServer({ address: metricsAddressFlag }, { metrics, log });
  const metricsAddress = await metricsServer?.listen();

  const startController = () => {
    const controllerOptions = { namespace: values.namespace ?? env.WATCH_NAMESPACE ?? "", workers: Number(values.workers ?? 2), resyncMs: 60_000, maxQueuedKeys: 10_000, errorBackoffMs: 1_000 };
    controller = new Controller(controllerOptions, { kubeConfig: kc, store, reconciler, log, observer: metrics });
    controller.start().catch((err) => log.error("controller failed to start", { error: String(err) }));
    backupController = new BackupController(controllerOptions, { kubeConfig: kc, store: backupStore, reconciler: backupReconciler, log, observer: metrics });
    backupController.start().catch((err) => log.error("backup controller failed to start", { error: String(err) }));
  };
  const stopController = async () => {
    const c = controller;
    const b = backupController;
    controller = undefined;
    backupController = undefined;
    await Promise.all([c?.stop(), b?.stop()]);
  };

  if (leaderElect) {
    const leaseDurationSeconds = Number(values["lease-duration"] ?? 15);
    if (!Number.isInteger(leaseDurationSeconds) || leaseDurationSeconds < 2) throw new Error(`--lease-duration: a whole number of seconds, at least 2 (got ${values["lease-duration"]})`);
    elector = new LeaseLeaderElector(
      {
        namespace: values["lease-namespace"] ?? env.POD_NAMESPACE ?? "default",
        name: leaseName,
        identity: values.identity ?? env.POD_NAME ?? `${os.hostname()}-${process.pid}`,
        leaseDurationSeconds,
        renewMs: Math.min(2_000, Math.floor((leaseDurationSeconds * 1000) / 3)),
      },
      { leases: new KubeLeaseApi({ kubeConfig: kc }), now: () => new Date(), log },
    );
    elector.start({
      onStartedLeading: startController,
      onStoppedLeading: () => {
        // A replica that lost the Lease stops at once; another takes over.
        void stopController();
      },
    });
  } else {
    startController();
  }
  metricsServer?.setReady(true);
  log.info("started", { image, leaderElection: elector !== undefined, metricsAddress });
  return {
    elector,
    metrics,
    metricsAddress,
    controller: () => controller,
    backupController: () => backupController,
    stop: async () => {
      metricsServer?.setReady(false);
      elector?.stop();
      await stopController();
      await elector?.release();
      etcd.close();
      await metricsServer?.close();
    },
  };
}

/** "90d", "12h", "30m", "45s" → ms. */
export function parseDuration(v: string): number {
  const m = /^(\d+)(d|h|m|s)$/.exec(v.trim());
  if (!m) throw new Error(`not a duration: ${v} (use e.g. 90d, 12h, 30m, 45s)`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[m[2] as "d" | "h" | "m" | "s"];
  return Number(m[1]) * unit;
}

export async function main(argv: string[]): Promise<number> {
  const op = await startOperator(argv);
  if (argv.includes("--help")) return 0;
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  await op.stop();
  return 0;
}
