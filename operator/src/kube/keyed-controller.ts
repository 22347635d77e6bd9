/**
 * The machinery every controller of the operator shares: informers feed a bounded, deduplicating
 * work queue of `namespace/name` keys of one kind of object; `workers` loops take a key, read the
 * object afresh and run one pass, then requeue the key after the pass's delay (failures back off,
 * doubling up to 16x). Objects the controller owns (pods, PVCs, Jobs) queue their owner's key
 * through a label naming it. A dropped watch or failed list restarts its informer after a pause; a
 * resync re-adds every known object periodically, so a missed event costs only time.
 *
 * A controller supplies the informers, how to read an object and its pass (`ControllerSource`);
 * every pass is reported to the optional `PassObserver` (metrics).
 */
import type { Informer, KubeConfig, KubernetesObject, ObjectCache } from "@kubernetes/client-node";
import type { Log } from "../logger.js";
import { apiErrorText } from "./kube-cluster-store.js";
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

export type AnyInformer = Informer<KubernetesObject> & ObjectCache<KubernetesObject>;

/** What one controller watches and does. */
export interface ControllerSource<T> {
  /** What a key names, for logs ("cluster", "backup"). */
  readonly kind: string;
  /**
   * The informers, not started: `primary` lists the objects the keys name; each of `owned` lists
   * objects whose label `ownerLabel` names their owner.
   */
  informers(kubeConfig: KubeConfig, namespace: string): { primary: AnyInformer; owned: Array<{ informer: AnyInformer; ownerLabel: string }> };
  /** The object as it is now, or undefined if it is gone. */
  get(namespace: string, name: string): Promise<T | undefined>;
  /** One pass; the key is requeued after `requeueAfterMs` (0: not); `step` names what it decided (metrics). */
  reconcile(obj: T): Promise<{ requeueAfterMs: number; step?: string }>;
}

/** Told about every pass (implemented by metrics/operator-metrics.ts). */
export interface PassObserver {
  passed(controller: string, outcome: { ok: boolean; step?: string; seconds: number }): void;
  /** A key was requeued with back-off after a failed pass. */
  retried(controller: string): void;
  /** One of the controller's informers (re)started its list-and-watch (after a drop, a re-watch). */
  watchStarted(controller: string): void;
}

export class KeyedController<T> {
  readonly queue: WorkQueue;
  private readonly informers: AnyInformer[] = [];
  private readonly failures = new Map<string, number>();
  private running = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private primary: AnyInformer | undefined;
  /** Passes run (for tests and metrics). */
  passes = 0;

  constructor(
    protected readonly options: ControllerOptions,
    private readonly base: { kubeConfig: KubeConfig; log: Log; source: ControllerSource<T>; observer?: PassObserver },
  ) {
    this.queue = new WorkQueue({ maxKeys: options.maxQueuedKeys });
  }

  async start(): Promise<void> {
    this.running = true;
    const { kubeConfig, source, log } = this.base;
    const { primary, owned } = source.informers(kubeConfig, this.options.namespace);
    const enqueue = (o: KubernetesObject) => this.queue.add(`${o.metadata?.namespace}/${o.metadata?.name}`);
    primary.on("add", enqueue);
    primary.on("update", enqueue);
    primary.on("delete", (o) => this.failures.delete(`${o.metadata?.namespace}/${o.metadata?.name}`));
    this.primary = primary;
    for (const { informer, ownerLabel } of owned) {
      const toOwner = (o: KubernetesObject) => {
        const owner = o.metadata?.labels?.[ownerLabel];
        if (owner) this.queue.add(`${o.metadata?.namespace}/${owner}`);
      };
      informer.on("add", toOwner);
      informer.on("update", toOwner);
      informer.on("delete", toOwner);
    }
    for (const inf of [primary, ...owned.map((o) => o.informer)]) {
      inf.on("connect", () => this.base.observer?.watchStarted(source.kind));
      inf.on("error", (err: unknown) => {
        if (!this.running) return;
        log.warn("watch failed; restarting", { error: String((err as Error)?.message ?? err) });
        setTimeout(() => {
          if (this.running) inf.start().catch(() => {});
        }, 2000).unref();
      });
      this.informers.push(inf);
    }
    await Promise.all(this.informers.map((i) => i.start()));
    this.resyncTimer = setInterval(() => {
      for (const o of this.primary?.list() ?? []) enqueue(o);
    }, this.options.resyncMs);
    this.resyncTimer.unref();
    for (let i = 0; i < this.options.workers; i++) void this.work();
  }

  private async work(): Promise<void> {
    const { source, log } = this.base;
    while (this.running) {
      const key = await this.queue.next();
      if (key === undefined) return;
      const [namespace, name] = key.split("/") as [string, string];
      let after = 0;
      const started = performance.now();
      const seconds = () => (performance.now() - started) / 1000;
      try {
        const obj = await source.get(namespace, name);
        if (obj !== undefined) {
          this.passes++;
          const r = await source.reconcile(obj);
          after = r.requeueAfterMs;
          this.base.observer?.passed(source.kind, { ok: true, ...(r.step !== undefined ? { step: r.step } : {}), seconds: seconds() });
        }
        this.failures.delete(key);
      } catch (err) {
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        after = this.options.errorBackoffMs * Math.min(16, 2 ** (n - 1));
        log.warn(`${source.kind} pass failed`, { [source.kind]: key, error: apiErrorText(err), retryInMs: after });
        this.base.observer?.passed(source.kind, { ok: false, seconds: seconds() });
        this.base.observer?.retried(source.kind);
      } finally {
        this.queue.done(key);
      }
      if (after > 0 && this.running) this.queue.addAfter(key, after);
    }
  }

  /** What a key names: the controller's kind ("cluster", "backup"). */
  get kind(): string {
    return this.base.source.kind;
  }

  /** The primary objects as the informer last saw them (empty before start and after stop). */
  objects(): T[] {
    return this.running ? ((this.primary?.list() ?? []) as unknown as T[]) : [];
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutdown();
    await Promise.all(this.informers.map((i) => i.stop().catch(() => {})));
  }
}
