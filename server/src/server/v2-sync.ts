/**
 * TTL expiry of the v2 store on the leader (etcd's sync ticker): every tick, when the store holds
 * a node with a TTL, the leader proposes a v2 SYNC request carrying its wall-clock time; applying
 * it expires every node whose time has come, on every member at the same log position. Followers
 * propose nothing. One SYNC in flight at a time (a slow log does not pile them up).
 */
import type { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import type { ApplyResult } from "./proposer.js";

export interface V2SyncOptions {
  /** etcd: 500 ms. */
  tickMs: number;
}

export interface V2SyncDeps {
  isLeader(): boolean;
  hasTtlKeys(): boolean;
  proposeV2(req: Request): Promise<ApplyResult>;
  clock: Clock;
  logger: Logger;
}

export class V2Sync {
  private timer: TimerHandle | undefined;
  private inFlight = false;

  constructor(private readonly options: V2SyncOptions, private readonly deps: V2SyncDeps) {}

  start(): void {
    this.timer = this.deps.clock.setInterval(() => this.tick(), this.options.tickMs);
  }

  stop(): void {
    if (this.timer !== undefined) this.deps.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (this.timer === undefined || this.inFlight || !this.deps.isLeader() || !this.deps.hasTtlKeys()) return;
    this.inFlight = true;
    const time = BigInt(this.deps.clock.nowMs()) * 1_000_000n;
    this.deps
      .proposeV2({ Method: "SYNC", Time: time } as Request)
      .catch((err: unknown) => this.deps.logger.debug("v2 sync request failed", { error: String(err) }))
      .finally(() => {
        this.inFlight = false;
      });
  }
}
