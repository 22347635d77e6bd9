/**
 * The lessor's clock on the leader (etcd's revokeExpiredLeases and checkpoint scheduling): on
 * every tick, leases past their expiry are revoked through the log, and remaining TTLs are
 * checkpointed through the log (with --experimental-enable-lease-checkpoint) so that a new
 * leader does not start them over. Followers do nothing: expiry is the leader's decision.
 */
import { ErrLeaseNotFound } from "../lease/errors.js";
import type { Lessor } from "../lease/lessor.js";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import type { RequestHeader } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import { raftRequest, type Proposer } from "./proposer.js";

/** Expired leases revoked per tick, and checkpoints proposed per tick (etcd's rate limits). */
const REVOKES_PER_TICK_MAX = 500;
const CHECKPOINTS_PER_TICK_MAX = 1000;

export interface LeaseClockOptions {
  /** Lease expiry/checkpoint polling period (etcd: 500 ms). */
  tickMs: number;
}

export interface LeaseClockDeps {
  lessor: Lessor;
  proposer: Proposer;
  isLeader(): boolean;
  /**
   * The header the member's own revokes carry: while auth is on, root at the current auth
   * revision (etcd revokes expired leases as root); undefined while it is off.
   */
  internalHeader?(): RequestHeader | undefined;
  clock: Clock;
  logger: Logger;
}

export class LeaseClock {
  private timer: TimerHandle | undefined;
  /** Expired leases this leader set out to revoke (etcd_debugging_server_lease_expired_total). */
  expired = 0;

  constructor(private readonly options: LeaseClockOptions, private readonly deps: LeaseClockDeps) {}

  start(): void {
    this.timer = this.deps.clock.setInterval(() => this.tick(), this.options.tickMs);
  }

  stop(): void {
    if (this.timer) this.deps.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (this.timer === undefined || !this.deps.isLeader()) return;
    const { lessor, proposer, logger } = this.deps;
    for (const id of lessor.expiredLeases(REVOKES_PER_TICK_MAX)) {
      this.expired++;
      void proposer.propose(raftRequest({ leaseRevoke: { ID: id }, header: this.deps.internalHeader?.() })).catch((err) => {
        if (!(err instanceof ErrLeaseNotFound)) logger.warn("failed to revoke expired lease", { lease: id, error: String(err) });
      });
    }
    const cps = lessor.checkpoints(CHECKPOINTS_PER_TICK_MAX);
    if (cps.length > 0) {
      const checkpoints = cps.map((c) => ({ ID: c.id, remainingTTL: BigInt(c.remainingTtlSeconds) }));
      void proposer.propose(raftRequest({ leaseCheckpoint: { checkpoints } })).catch(() => undefined);
    }
  }
}
