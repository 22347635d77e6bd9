/**
 * Automatic compaction (--auto-compaction-mode / --auto-compaction-retention), run by the leader:
 *  - "revision": every `revisionIntervalMs` (etcd: 5 minutes), compact at current - retention;
 *  - "periodic": sample the revision every retention/10 (at most every hour), and compact at
 *    the revision sampled one retention ago, so history older than the retention goes.
 * A bare number as periodic retention means hours, as in etcd.
 */
import type { Clock, TimerHandle } from "../pkg/clock.js";
import { parseGoDurationMs } from "../pkg/flag-set.js";
import type { Logger } from "../pkg/logger.js";

export interface CompactorOptions {
  mode: "periodic" | "revision";
  retention: string;
  revisionIntervalMs?: number;
}

export interface CompactorDeps {
  currentRevision(): number;
  compactRevision(): number;
  isLeader(): boolean;
  compact(revision: number): Promise<void>;
  clock: Clock;
  logger: Logger;
}

const HOUR_MS = 3600_000;

export class Compactor {
  private timer: TimerHandle | undefined;
  private readonly samples: { atMs: number; revision: number }[] = [];
  private readonly retentionRevisions: number;
  private readonly retentionMs: number;

  constructor(private readonly options: CompactorOptions, private readonly deps: CompactorDeps) {
    if (options.mode === "revision") {
      this.retentionRevisions = Number(options.retention);
      this.retentionMs = 0;
    } else {
      this.retentionRevisions = 0;
      this.retentionMs = /^[0-9]+$/.test(options.retention) ? Number(options.retention) * HOUR_MS : parseGoDurationMs(options.retention);
    }
  }

  get enabled(): boolean {
    return this.retentionRevisions > 0 || this.retentionMs > 0;
  }

  start(): void {
    if (!this.enabled) return;
    const intervalMs = this.options.mode === "revision"
      ? this.options.revisionIntervalMs ?? 5 * 60_000
      : Math.max(1000, Math.min(HOUR_MS, this.retentionMs / 10));
    const { clock } = this.deps;
    this.timer = clock.setInterval(() => this.tick(clock.nowMs()), intervalMs);
    this.samples.push({ atMs: clock.nowMs(), revision: this.deps.currentRevision() });
  }

  stop(): void {
    if (this.timer) this.deps.clock.clearInterval(this.timer);
  }

  /** One pass; exposed for tests. */
  tick(nowMs: number): void {
    const current = this.deps.currentRevision();
    let target = 0;
    if (this.options.mode === "revision") {
      target = current - this.retentionRevisions;
    } else {
      this.samples.push({ atMs: nowMs, revision: current });
      // The newest sample at least one retention old is the compaction point.
      while (this.samples.length > 1 && nowMs - this.samples[1]!.atMs >= this.retentionMs) this.samples.shift();
      const oldest = this.samples[0]!;
      if (nowMs - oldest.atMs >= this.retentionMs) target = oldest.revision;
      if (this.samples.length > 10_000) this.samples.splice(0, this.samples.length - 10_000);
    }
    if (!this.deps.isLeader() || target <= 0 || target <= this.deps.compactRevision()) return;
    this.deps.logger.info("starting auto compaction", { revision: target, mode: this.options.mode, retention: this.options.retention });
    this.deps.compact(target).catch((err) => this.deps.logger.warn("auto compaction failed", { revision: target, error: String(err) }));
  }
}
