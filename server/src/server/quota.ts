/**
 * etcd's backend quota, checked before a request is proposed: a write that would grow the
 * backend past the quota raises the NOSPACE alarm (through the log, so every member refuses
 * writes from then on), and while NOSPACE is raised, requests that add data are refused with
 * "database space exceeded". The backend's size on disk is sampled once a second; between two
 * samples the cost of every request admitted since the last one is added to it, so that a burst
 * cannot run past the quota for the length of a sample (etcd reads its database file's size,
 * which grows at every commit: at 8 KiB puts a one-second lag let 40% more data in).
 */
import { AlarmType, TxnRequest } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import { serverError } from "./errors.js";

/** etcd's default quota (--quota-backend-bytes 0). */
export const DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;
/** etcd's per-key overhead in its quota cost. */
const KEY_OVERHEAD_BYTES = 64;
const SIZE_SAMPLE_INTERVAL_MS = 1000;

export interface QuotaOptions {
  /** Backend size at which writes stop with NOSPACE (0 = etcd's default, 2 GiB). */
  quotaBackendBytes: number;
}

export interface QuotaDeps {
  sizeBytes(): Promise<number>;
  isRaised(alarm: AlarmType): boolean;
  /** Proposes raising NOSPACE for this member; failures are the caller's to log. */
  raiseNoSpace(): void;
  clock: Clock;
  logger: Logger;
}

export class BackendQuota {
  private dbSizeBytes = 0;
  /** Costs admitted so far, and as of the last sample's start. */
  private admittedBytes = 0;
  private admittedAtSample = 0;
  private timer: TimerHandle | undefined;

  constructor(private readonly options: QuotaOptions, private readonly deps: QuotaDeps) {}

  start(): void {
    const refresh = (): void => {
      this.refresh().catch(() => undefined);
    };
    refresh();
    this.timer = this.deps.clock.setInterval(refresh, SIZE_SAMPLE_INTERVAL_MS);
  }

  /** Samples the backend's size now (after a defragmentation shrank it, say). */
  async refresh(): Promise<void> {
    const admitted = this.admittedBytes;
    this.dbSizeBytes = await this.deps.sizeBytes();
    this.admittedAtSample = admitted;
  }

  /** The backend's size as the quota sees it: the last sample and what was admitted since. */
  get sizeBytes(): number {
    return this.dbSizeBytes + (this.admittedBytes - this.admittedAtSample);
  }

  stop(): void {
    if (this.timer) this.deps.clock.clearInterval(this.timer);
  }

  private get quotaBytes(): number {
    return this.options.quotaBackendBytes > 0 ? this.options.quotaBackendBytes : DEFAULT_QUOTA_BYTES;
  }

  /**
   * Admits a request that may add `costBytes` to the backend.
   * @throws ServerError NoSpace (and raises the alarm when this request is the one to cross it).
   */
  check(costBytes: number): void {
    if (this.deps.isRaised(AlarmType.NOSPACE)) throw serverError("NoSpace");
    const size = this.sizeBytes;
    if (size + costBytes <= this.quotaBytes) {
      this.admittedBytes += costBytes;
      return;
    }
    this.deps.logger.warn("backend quota exceeded; raising NOSPACE alarm", { "db-size": size, quota: this.quotaBytes });
    this.deps.raiseNoSpace();
    throw serverError("NoSpace");
  }
}

/** The quota cost of a put. */
export function putCostBytes(key: Uint8Array, value: Uint8Array): number {
  return key.length + value.length + KEY_OVERHEAD_BYTES;
}

/** The quota cost of a lease grant. */
export const LEASE_COST_BYTES = KEY_OVERHEAD_BYTES;

/** Bytes a txn's puts may add (etcd's quota cost). */
export function txnCostBytes(req: TxnRequest): number {
  let cost = 0;
  for (const op of [...req.success, ...req.failure]) {
    if (op.requestPut) cost += putCostBytes(op.requestPut.key, op.requestPut.value);
    else if (op.requestTxn) cost += txnCostBytes(op.requestTxn);
  }
  return cost;
}
