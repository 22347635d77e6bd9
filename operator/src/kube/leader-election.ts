/**
 * Leader election on a coordination.k8s.io/v1 Lease, as Kubernetes controllers do: a candidate
 * takes the Lease when it is absent or its holder has not renewed it within leaseDurationSeconds,
 * then renews it every renewMs; writes carry the resourceVersion read, so two candidates never
 * both win. A leader that fails to renew for leaseDurationSeconds stops leading (onStoppedLeading)
 * before anyone else may take over. Every attempt is bounded (`attemptTimeoutMs`, default half the
 * lease duration): an API server that accepts the connection and never answers cannot keep a
 * leader from noticing that it failed to renew. `release()` hands the Lease back on a clean stop
 * (holder cleared), so a standby takes over at its next attempt instead of after the lease
 * duration.
 */
import { V1MicroTime, type V1Lease } from "@kubernetes/client-node";

/** The Lease operations the elector needs (adapter: kube/lease-api.ts over CoordinationV1Api). */
export interface LeaseApi {
  read(namespace: string, name: string): Promise<V1Lease | undefined>;
  create(namespace: string, lease: V1Lease): Promise<V1Lease>;
  /** Replaces the lease; rejects on a resourceVersion conflict. */
  replace(namespace: string, name: string, lease: V1Lease): Promise<V1Lease>;
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds: number;
  renewMs: number;
  /** Bound on one acquire-or-renew attempt, ms (default: half the lease duration). */
  attemptTimeoutMs?: number;
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  onStoppedLeading(): void;
}

export class LeaseLeaderElector {
  private leading = false;
  private lastRenew = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly options: LeaderElectionOptions,
    private readonly deps: { leases: LeaseApi; now: () => Date; log: { info(m: string, f?: Record<string, unknown>): void } },
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  start(cb: LeaderCallbacks): void {
    const loop = async () => {
      if (this.stopped) return;
      await this.tryOnce(cb).catch(() => false);
      if (this.stopped) return;
      this.timer = setTimeout(loop, this.options.renewMs);
    };
    void loop();
  }

  /** One acquire-or-renew attempt; true when this candidate holds the Lease afterwards. */
  async tryOnce(cb: LeaderCallbacks): Promise<boolean> {
    const limit = this.options.attemptTimeoutMs ?? (this.options.leaseDurationSeconds * 1000) / 2;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), limit);
      timer.unref?.();
    });
    const ok = await Promise.race([this.acquireOrRenew().catch(() => false), timeout]);
    clearTimeout(timer);
    if (this.stopped) return ok;
    const now = this.deps.now().getTime();
    if (ok) {
      this.lastRenew = now;
      if (!this.leading) {
        this.leading = true;
        this.deps.log.info("leading", { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity });
        cb.onStartedLeading();
      }
    } else if (this.leading && now - this.lastRenew > this.options.leaseDurationSeconds * 1000) {
      this.leading = false;
      this.deps.log.info("stopped leading", { lease: `${this.options.namespace}/${this.options.name}` });
      cb.onStoppedLeading();
    }
    return ok;
  }

  private async acquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity, leaseDurationSeconds } = this.options;
    const now = new V1MicroTime(this.deps.now().getTime());
    const current = await this.deps.leases.read(namespace, name);
    if (current === undefined) {
      await this.deps.leases.create(namespace, {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace },
        spec: { holderIdentity: identity, leaseDurationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
      });
      return true;
    }
    const spec = current.spec ?? {};
    const held = spec.holderIdentity === identity;
    const renewed = spec.renewTime ? new Date(spec.renewTime).getTime() : 0;
    const expired = now.getTime() - renewed > (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    if (!held && spec.holderIdentity && !expired) return false;
    if (this.stopped) return false;
    await this.deps.leases.replace(namespace, name, {
      ...current,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds,
        renewTime: now,
        ...(held ? {} : { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
      },
    });
    return true;
  }

  /** Stops trying; the Lease is left as it is (see release). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /**
   * After stop() and after the work the Lease guards has stopped: if this replica held the Lease,
   * clear its holder so another replica takes over at once. Best effort (a failure leaves the
   * Lease to expire).
   */
  async release(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    const { namespace, name, identity } = this.options;
    try {
      const current = await this.deps.leases.read(namespace, name);
      if (current?.spec?.holderIdentity !== identity) return;
      const now = new V1MicroTime(this.deps.now().getTime());
      await this.deps.leases.replace(namespace, name, { ...current, spec: { ...current.spec, holderIdentity: "", renewTime: now } });
      this.deps.log.info("released the lease", { lease: `${namespace}/${name}`, identity });
    } catch {
      // the Lease expires on its own
    }
  }
}
