/**
 * The operator's Prometheus metrics (prom-client), all named `etcd_ts_operator_*`:
 *
 *  - passes: `reconciles_total{controller,result}` (result: success, error),
 *    `reconcile_steps_total{controller,step}` (what a successful pass decided: a step kind such as
 *    bootstrap, wait, steady, invalid-spec), `reconcile_errors_total{controller}`,
 *    `reconcile_duration_seconds{controller}` (histogram), `workqueue_depth{controller}` (keys
 *    ready and waiting for a worker), `workqueue_retries_total{controller}` (keys requeued after a
 *    failed pass, with back-off), `watch_starts_total{controller}` (informer watches opened:
 *    drops and server-side timeouts show as increases);
 *  - `leader_election_leading{lease}`: 1 while this replica holds the Lease (or runs without
 *    leader election), else 0;
 *  - per EtcdCluster (labels namespace, cluster), from the cluster's status as the operator last
 *    wrote it: `cluster_members`, `cluster_healthy_members`, `cluster_ready_members`,
 *    `cluster_desired_members` (spec.size), `cluster_leader_present` (0/1), `cluster_phase{phase}`
 *    (1 for the current phase, 0 for the others);
 *  - per EtcdBackup (labels namespace, backup, cluster) with a successful run:
 *    `backup_last_success_age_seconds`, `backup_last_success_timestamp_seconds`,
 *    `backup_size_bytes`.
 *
 * The per-object gauges are computed at scrape time from `MetricsView` (the leading replica's
 * informer caches), so a deleted object's series disappear and a standby replica exports none.
 * The pass counters come through `PassObserver`, which the controllers call.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { EtcdBackup, EtcdCluster } from "../api/v1alpha1.js";
import type { PassObserver } from "../kube/keyed-controller.js";

const PREFIX = "etcd_ts_operator_";

/** Every phase an EtcdCluster may report (the CRD's enum), so cluster_phase has a 0 for each other one. */
export const CLUSTER_PHASES = ["Creating", "Running", "Scaling", "Repairing", "Degraded", "Failed", "Paused", "Upgrading"] as const;

/** What the metrics read at scrape time (main.ts wires it to the elector and controllers). */
export interface MetricsView {
  /** The Lease's name, or undefined without leader election. */
  lease: string | undefined;
  leading(): boolean;
  /** The running controllers' queues (none while standing by). */
  queues(): Array<{ controller: string; depth: number }>;
  clusters(): EtcdCluster[];
  backups(): EtcdBackup[];
}

export interface OperatorMetricsOptions {
  /** Also export prom-client's process_* and nodejs_* metrics. */
  defaultMetrics: boolean;
}

export class OperatorMetrics implements PassObserver {
  readonly registry = new Registry();
  private readonly reconciles: Counter<"controller" | "result">;
  private readonly steps: Counter<"controller" | "step">;
  private readonly errors: Counter<"controller">;
  private readonly duration: Histogram<"controller">;
  private readonly retries: Counter<"controller">;
  private readonly watches: Counter<"controller">;

  constructor(
    options: OperatorMetricsOptions,
    private readonly deps: { view: MetricsView; now: () => Date },
  ) {
    const registers = [this.registry];
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
    this.reconciles = new Counter({ name: `${PREFIX}reconciles_total`, help: "Reconcile passes, by result (success, error).", labelNames: ["controller", "result"], registers });
    this.steps = new Counter({ name: `${PREFIX}reconcile_steps_total`, help: "Successful reconcile passes, by the step the pass decided.", labelNames: ["controller", "step"], registers });
    this.errors = new Counter({ name: `${PREFIX}reconcile_errors_total`, help: "Reconcile passes that failed.", labelNames: ["controller"], registers });
    this.duration = new Histogram({
      name: `${PREFIX}reconcile_duration_seconds`,
      help: "How long a reconcile pass took.",
      labelNames: ["controller"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.retries = new Counter({ name: `${PREFIX}workqueue_retries_total`, help: "Keys requeued with back-off after a failed pass.", labelNames: ["controller"], registers });
    this.watches = new Counter({
      name: `${PREFIX}watch_starts_total`,
      help: "Watches a controller's informers opened: one per informer at start, one more after every drop or server-side timeout.",
      labelNames: ["controller"],
      registers,
    });
    for (const controller of ["cluster", "backup"]) {
      this.watches.inc({ controller }, 0);
      for (const result of ["success", "error"]) this.reconciles.inc({ controller, result }, 0);
      this.errors.inc({ controller }, 0);
      this.retries.inc({ controller }, 0);
    }
    this.gauges();
  }

  passed(controller: string, outcome: { ok: boolean; step?: string; seconds: number }): void {
    this.reconciles.inc({ controller, result: outcome.ok ? "success" : "error" });
    if (!outcome.ok) this.errors.inc({ controller });
    else if (outcome.step !== undefined) this.steps.inc({ controller, step: outcome.step });
    this.duration.observe({ controller }, outcome.seconds);
  }

  retried(controller: string): void {
    this.retries.inc({ controller });
  }

  watchStarted(controller: string): void {
    this.watches.inc({ controller });
  }

  /** The text exposition and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Gauges computed when scraped. */
  private gauges(): void {
    const { view } = this.deps;
    const registers = [this.registry];
    const clusterLabels = ["namespace", "cluster"] as const;
    const backupLabels = ["namespace", "backup", "cluster"] as const;
    new Gauge({
      name: `${PREFIX}leader_election_leading`,
      help: "1 while this replica holds the operator's Lease (or runs without leader election), else 0.",
      labelNames: ["lease"],
      registers,
      collect() {
        this.set({ lease: view.lease ?? "" }, view.leading() ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}workqueue_depth`,
      help: "Keys waiting in a controller's work queue for a worker.",
      labelNames: ["controller"],
      registers,
      collect() {
        this.reset();
        for (const q of view.queues()) this.set({ controller: q.controller }, q.depth);
      },
    });
    const perCluster = (name: string, help: string, value: (c: EtcdCluster) => number | undefined) =>
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        labelNames: clusterLabels,
        registers,
        collect() {
          this.reset();
          for (const c of view.clusters()) {
            const v = value(c);
            if (v !== undefined) this.set({ namespace: c.metadata.namespace ?? "", cluster: c.metadata.name ?? "" }, v);
          }
        },
      });
    perCluster("cluster_members", "Members in the cluster's etcd member list, as last observed.", (c) => c.status?.members?.length ?? 0);
    perCluster("cluster_healthy_members", "Members that answered their Status call, as last observed.", (c) => c.status?.members?.filter((m) => m.healthy === true).length ?? 0);
    perCluster("cluster_ready_members", "Members whose pods are ready, as last observed.", (c) => c.status?.readyMembers ?? 0);
    perCluster("cluster_desired_members", "The cluster's spec.size.", (c) => (typeof c.spec?.size === "number" ? c.spec.size : undefined));
    perCluster("cluster_leader_present", "1 when the cluster had a leader when last observed, else 0.", (c) => (c.status?.leader ? 1 : 0));
    new Gauge({
      name: `${PREFIX}cluster_phase`,
      help: "The cluster's phase: 1 for the current one, 0 for the others.",
      labelNames: [...clusterLabels, "phase"],
      registers,
      collect() {
        this.reset();
        for (const c of view.clusters()) {
          const labels = { namespace: c.metadata.namespace ?? "", cluster: c.metadata.name ?? "" };
          for (const phase of CLUSTER_PHASES) this.set({ ...labels, phase }, c.status?.phase === phase ? 1 : 0);
        }
      },
    });
    const now = () => this.deps.now().getTime();
    const lastSuccess = (b: EtcdBackup): number | undefined => {
      const t = b.status?.lastSuccessTime ?? (b.status?.phase === "Succeeded" ? b.status.completionTime : undefined);
      const ms = t === undefined ? NaN : Date.parse(t);
      return Number.isFinite(ms) ? ms : undefined;
    };
    const perBackup = (name: string, help: string, value: (b: EtcdBackup) => number | undefined) =>
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        labelNames: backupLabels,
        registers,
        collect() {
          this.reset();
          for (const b of view.backups()) {
            const v = value(b);
            if (v !== undefined) this.set({ namespace: b.metadata.namespace ?? "", backup: b.metadata.name ?? "", cluster: b.spec?.clusterName ?? "" }, v);
          }
        },
      });
    perBackup("backup_last_success_age_seconds", "Seconds since the backup's latest successful run finished.", (b) => {
      const t = lastSuccess(b);
      return t === undefined ? undefined : Math.max(0, (now() - t) / 1000);
    });
    perBackup("backup_last_success_timestamp_seconds", "When the backup's latest successful run finished (Unix time).", (b) => {
      const t = lastSuccess(b);
      return t === undefined ? undefined : t / 1000;
    });
    perBackup("backup_size_bytes", "Size of the backup's latest successful snapshot.", (b) => (lastSuccess(b) !== undefined && typeof b.status?.size === "number" ? b.status.size : undefined));
  }
}
