/**
 * The lessor: owner of every lease on a member.
 *
 * Two drivers move it, and the split matters:
 *
 * - The apply loop (every member, same order): grant(), revoke(), attach(), detach(),
 *   applyCheckpoint() and recover() run when a Raft entry (or a snapshot) is applied. They change
 *   the replicated state, so they must be deterministic: they never look at whether this member
 *   leads, except to keep the leader's clock-only bookkeeping (expiry and checkpoint queues) in
 *   step. Their persistence writes go into the apply loop's current backend batch.
 * - The leader's clock (primary only): promote()/demote() follow leadership; renew() answers
 *   keepalives; expiredLeases() and checkpoints() are polled by the server, which proposes a
 *   LeaseRevoke / LeaseCheckpoint entry for what they report. Expiry is never applied locally: a
 *   lease only disappears when its revoke entry is applied, on every member alike.
 *
 * Expiry follows etcd 3.4: only the primary counts down; followers hold every lease "forever".
 * When a member becomes primary, each lease's countdown restarts from its full TTL, or from its
 * checkpointed remaining TTL when one was applied (lease checkpointing), plus `extendMs` (the
 * server passes its election timeout). The same happens after a restart: recover() loads the
 * leases, and the next promote() restarts their countdowns.
 *
 * Work is bounded per call: the expiry and checkpoint queues are indexed heaps (O(log n) per
 * grant/renew/revoke), and expiredLeases()/checkpoints() touch O(limit) entries.
 *
 * No timers: the server polls (etcd polls every 500 ms and revokes at most 1000 leases per
 * second, see LEASE_REVOKE_RATE_PER_SECOND). The lessor is single-threaded like the rest of the
 * server: calls must not interleave with a pending recover().
 */

import { ErrLeaseExists, ErrLeaseExpired, ErrLeaseNotFound, ErrLeaseTTLTooLarge, ErrNotPrimary } from "./errors.js";
import type { Lease } from "./lease.js";
import { LeaseQueue } from "./lease-queue.js";
import { exponentialBuckets, HistogramCell } from "../pkg/metric-cells.js";

/** What the lessor counts for etcd's etcd_debugging_lease_* metrics. */
export class LessorCounters {
  granted = 0;
  revoked = 0;
  /** Renewals answered (on the leader). */
  renewed = 0;
  /** Granted TTLs, in seconds (etcd_debugging_lease_ttl_total). */
  readonly ttlSeconds = new HistogramCell(exponentialBuckets(1, 2, 24));
}

/** The largest TTL a lease may be granted with (etcd's MaxLeaseTTL), in seconds. */
export const MAX_LEASE_TTL_SECONDS = 9_000_000_000;
/** etcd's default interval between checkpoints of one lease (5 minutes). */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 5 * 60 * 1000;
/** etcd's default interval after which a reported, still unrevoked, expired lease is reported again. */
export const DEFAULT_EXPIRED_LEASES_RETRY_INTERVAL_MS = 3000;
/**
 * etcd's revoke budget: at most this many expired leases per second. etcd polls every 500 ms and
 * asks for half of it each time; the server should do the same. promote() also uses it to spread
 * out leases that would otherwise all expire in the same second.
 */
export const LEASE_REVOKE_RATE_PER_SECOND = 1000;
/** etcd's cap on checkpoints batched into one LeaseCheckpoint proposal. */
export const MAX_LEASE_CHECKPOINT_BATCH_SIZE = 1000;
/** How many stale checkpoint-queue entries one checkpoints() call may skip beyond its limit. */
const CHECKPOINT_SKIP_BUDGET = 1000;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/** One persisted lease record. `remainingTtlSeconds` 0 means "no checkpoint" (full TTL). */
export interface LeaseRecord {
  id: bigint;
  ttlSeconds: number;
  remainingTtlSeconds: number;
}

/**
 * Persists lease records inside the apply loop's current backend batch (etcd's "lease" bucket),
 * so that a lease and the keys it deletes commit together with the consistent index.
 */
export interface LeasePersistence {
  /** Creates or overwrites the record of `id`. Called from inside the apply loop only. */
  put(id: bigint, ttlSeconds: number, remainingTtlSeconds: number): void;
  /** Deletes the record of `id` (absent is fine). Called from inside the apply loop only. */
  delete(id: bigint): void;
  /** Every committed record, in any order. Called by recover() only. */
  loadAll(): Promise<LeaseRecord[]>;
}

/** The lessor's time source; tests inject a fake. Must not go backwards. */
export interface Clock {
  nowMs(): number;
}

/** Structured logging the lessor uses; any logger with these methods fits. */
export interface LessorLogger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  debug?(message: string, fields?: Record<string, unknown>): void;
}

export interface LessorOptions {
  /**
   * Shortest TTL a lease gets; shorter requests are raised to it (etcd computes it from the
   * election timeout: ceil(1.5 × electionTicks × heartbeatMs / 1000)). Positive integer.
   */
  minTtlSeconds: number;
  /** How long after a checkpoint (or grant/promote) the next one of the same lease is due. */
  checkpointIntervalMs?: number;
  /** How long before an expired lease that is still not revoked is reported again. */
  expiredLeasesRetryIntervalMs?: number;
  /**
   * Schedule checkpoints of remaining TTLs (etcd's `--experimental-enable-lease-checkpoint`,
   * off by default in etcd 3.4). When off, checkpoints() only reports the clearing checkpoints
   * renew() asks for, and applyCheckpoint() still applies what others proposed.
   */
  enableCheckpoints?: boolean;
  /**
   * Write applied checkpoints to the lease records, so that the remaining TTL survives a restart
   * (etcd 3.6 behaviour, `--experimental-enable-lease-checkpoint-persist` in 3.5). Off by default,
   * as in etcd 3.4: there, a restart restarts the countdown from the full TTL unless the
   * checkpoint entry is replayed from the WAL.
   */
  persistCheckpoints?: boolean;
  /** Cap on concurrent waitRevoked() waiters (keepalives of expired leases). Default 100 000. */
  revokeWaitersMax?: number;
}

export interface LessorDependencies {
  persistence: LeasePersistence;
  clock: Clock;
  logger?: LessorLogger;
}

/** One checkpoint to propose: `remainingTtlSeconds` 0 clears a lease's checkpoint. */
export interface LeaseCheckpoint {
  id: bigint;
  remainingTtlSeconds: number;
}

/** The lessor's own, mutable record of a lease. Handed out as the read-only `Lease`. */
class LessorLease implements Lease {
  expiryMs = Infinity;
  checkpointedRemainingTtlSeconds = 0;
  /** Attached keys, by their latin1 spelling (a 1:1 map of bytes to string). */
  readonly keyByName = new Map<string, Buffer>();

  constructor(
    readonly id: bigint,
    readonly ttlSeconds: number,
  ) {}

  get keyCount(): number {
    return this.keyByName.size;
  }

  remainingTtlMs(nowMs: number): number {
    return this.expiryMs - nowMs;
  }

  keys(): Buffer[] {
    return [...this.keyByName.values()].sort(Buffer.compare);
  }

  /** The TTL a restarted countdown starts from: the checkpoint when set, else the full TTL. */
  countdownSeconds(): number {
    return this.checkpointedRemainingTtlSeconds > 0 ? this.checkpointedRemainingTtlSeconds : this.ttlSeconds;
  }
}

interface RevokeWaiter {
  resolve(): void;
  reject(error: Error): void;
  detachSignal?: () => void;
}

export class Lessor {
  private readonly minTtlSeconds: number;
  private readonly checkpointIntervalMs: number;
  private readonly expiredLeasesRetryIntervalMs: number;
  private readonly enableCheckpoints: boolean;
  private readonly persistCheckpoints: boolean;
  private readonly revokeWaitersMax: number;
  private readonly persistence: LeasePersistence;
  private readonly clock: Clock;
  private readonly logger: LessorLogger | undefined;

  private leaseById = new Map<bigint, LessorLease>();
  /** Which lease each attached key belongs to, by the key's latin1 spelling. */
  private leaseIdByKeyName = new Map<string, bigint>();
  /** Primary only: every lease, by the time it is next due to be reported expired. */
  private readonly expiryQueue = new LeaseQueue();
  /** Primary only, checkpoints enabled: leases by the time of their next checkpoint. */
  private readonly checkpointQueue = new LeaseQueue();
  /** Primary only: leases renewed while they had a checkpoint, whose checkpoint must be cleared. */
  private readonly pendingClears = new Set<bigint>();
  private readonly revokeWaitersById = new Map<bigint, RevokeWaiter[]>();
  private revokeWaiterCount = 0;
  private primary = false;
  private stopped = false;

  /**
   * Throws RangeError on invalid options. The lessor starts empty and not primary: call
   * recover() to load persisted leases, and promote() when the member becomes leader.
   */
  constructor(options: LessorOptions, deps: LessorDependencies) {
    if (!Number.isSafeInteger(options.minTtlSeconds) || options.minTtlSeconds < 1) {
      throw new RangeError(`lessor: minTtlSeconds must be a positive integer, got ${options.minTtlSeconds}`);
    }
    const checkpointIntervalMs = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    const retryIntervalMs = options.expiredLeasesRetryIntervalMs ?? DEFAULT_EXPIRED_LEASES_RETRY_INTERVAL_MS;
    if (!(checkpointIntervalMs > 0) || !Number.isFinite(checkpointIntervalMs)) {
      throw new RangeError(`lessor: checkpointIntervalMs must be positive, got ${checkpointIntervalMs}`);
    }
    if (!(retryIntervalMs > 0) || !Number.isFinite(retryIntervalMs)) {
      throw new RangeError(`lessor: expiredLeasesRetryIntervalMs must be positive, got ${retryIntervalMs}`);
    }
    this.minTtlSeconds = options.minTtlSeconds;
    this.checkpointIntervalMs = checkpointIntervalMs;
    this.expiredLeasesRetryIntervalMs = retryIntervalMs;
    this.enableCheckpoints = options.enableCheckpoints ?? false;
    this.persistCheckpoints = options.persistCheckpoints ?? false;
    this.revokeWaitersMax = options.revokeWaitersMax ?? 100_000;
    this.persistence = deps.persistence;
    this.clock = deps.clock;
    this.logger = deps.logger;
  }

  /** No background work to start: the server polls expiredLeases() and checkpoints(). */
  start(): void {}

  /**
   * Stops the lessor's leader duties: from now on it is never primary (renew() raises
   * ErrNotPrimary, expiredLeases()/checkpoints() report nothing) and pending waitRevoked()
   * promises reject with ErrNotPrimary. Apply-loop methods keep working, so the server can stop
   * the lessor before draining its apply loop. Idempotent.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.dropLeaderState();
  }

  /** Number of leases. */
  get size(): number {
    return this.leaseById.size;
  }

  /**
   * Replaces the in-memory state with the persisted leases: at startup, and after the backend was
   * replaced by a snapshot. Keys are not persisted with the leases: the server re-attaches them
   * from the KV store's lease fields with attach() afterwards. TTLs below the minimum are raised.
   * Leases come back not counting down; if this lessor is primary their countdowns restart at
   * once (as promote(0) would), otherwise at the next promote(). waitRevoked() waiters of leases
   * that are gone resolve. Rejects with whatever `persistence.loadAll()` rejects with; then the
   * state is unchanged. Throws RangeError (a broken invariant) on a corrupt record.
   */
  async recover(): Promise<void> {
    const records = await this.persistence.loadAll();
    const leaseById = new Map<bigint, LessorLease>();
    for (const record of records) {
      assertLeaseId(record.id);
      if (!Number.isSafeInteger(record.ttlSeconds) || !Number.isSafeInteger(record.remainingTtlSeconds)) {
        throw new RangeError(`lessor: corrupt lease record ${record.id}: ttl ${record.ttlSeconds}`);
      }
      if (leaseById.has(record.id)) throw new RangeError(`lessor: duplicate lease record ${record.id}`);
      const lease = new LessorLease(record.id, Math.max(record.ttlSeconds, this.minTtlSeconds));
      lease.checkpointedRemainingTtlSeconds = record.remainingTtlSeconds;
      leaseById.set(record.id, lease);
    }
    const previous = this.leaseById;
    this.leaseById = leaseById;
    this.leaseIdByKeyName = new Map();
    this.expiryQueue.clear();
    this.checkpointQueue.clear();
    this.pendingClears.clear();
    for (const id of previous.keys()) {
      if (!leaseById.has(id)) this.settleWaiters(id, undefined);
    }
    if (this.isPrimary()) {
      const nowMs = this.clock.nowMs();
      for (const lease of leaseById.values()) this.restartCountdown(lease, nowMs, 0);
    }
    this.logger?.info("recovered leases", { count: leaseById.size });
  }

  /**
   * Applies a LeaseGrant. `ttlSeconds` below the minimum TTL is raised to it (etcd's rule).
   * Persists the lease into the current batch. On the primary the countdown starts now.
   * Returns the live lease.
   * Raises ErrLeaseNotFound for ID 0 (etcd's NoLease), ErrLeaseTTLTooLarge above
   * MAX_LEASE_TTL_SECONDS, ErrLeaseExists when the ID is taken; nothing changes then.
   * Throws RangeError (a broken invariant: the server validates first) for an ID outside int64
   * or a non-integer TTL.
   */
  /** Grants, revokes and renewals applied or answered here, and granted TTLs (metrics). */
  readonly counters = new LessorCounters();

  grant(id: bigint, ttlSeconds: number): Lease {
    assertInt64(id);
    if (!Number.isSafeInteger(ttlSeconds)) throw new RangeError(`lessor: TTL must be an integer, got ${ttlSeconds}`);
    if (id === 0n) throw new ErrLeaseNotFound();
    if (ttlSeconds > MAX_LEASE_TTL_SECONDS) throw new ErrLeaseTTLTooLarge();
    if (this.leaseById.has(id)) throw new ErrLeaseExists();
    const lease = new LessorLease(id, Math.max(ttlSeconds, this.minTtlSeconds));
    this.leaseById.set(id, lease);
    this.persistence.put(id, lease.ttlSeconds, 0);
    if (this.isPrimary()) this.restartCountdown(lease, this.clock.nowMs(), 0);
    this.counters.granted++;
    this.counters.ttlSeconds.observe(lease.ttlSeconds);
    return lease;
  }

  /**
   * Applies a LeaseRevoke (also how expired leases go: the primary proposes the revoke).
   * Deletes the lease and its record (in the current batch), forgets its keys, and resolves
   * waitRevoked() waiters. Returns the keys that were attached, in ascending byte order: the
   * server deletes them in the same batch, as one transaction with one revision. (Deleting a key
   * normally detaches it; for these the lease is already gone, so such detach() calls raise
   * ErrLeaseNotFound, which the server ignores.) Raises ErrLeaseNotFound; nothing changes then.
   */
  revoke(id: bigint): Buffer[] {
    const lease = this.leaseById.get(id);
    if (lease === undefined) throw new ErrLeaseNotFound();
    const keys = lease.keys();
    this.leaseById.delete(id);
    for (const name of lease.keyByName.keys()) {
      if (this.leaseIdByKeyName.get(name) === id) this.leaseIdByKeyName.delete(name);
    }
    this.expiryQueue.delete(id);
    this.checkpointQueue.delete(id);
    this.pendingClears.delete(id);
    this.persistence.delete(id);
    this.settleWaiters(id, undefined);
    this.counters.revoked++;
    return keys;
  }

  /**
   * Attaches keys to a lease (a put with this lease was applied, or recovery re-attaches). A key
   * attached to another lease moves here (the KV layer detaches it first in the normal flow).
   * The lessor copies the keys. Raises ErrLeaseNotFound; nothing changes then.
   */
  attach(id: bigint, keys: Buffer[]): void {
    const lease = this.leaseById.get(id);
    if (lease === undefined) throw new ErrLeaseNotFound();
    for (const key of keys) {
      const name = key.toString("latin1");
      const previousId = this.leaseIdByKeyName.get(name);
      if (previousId !== undefined && previousId !== id) this.leaseById.get(previousId)?.keyByName.delete(name);
      if (!lease.keyByName.has(name)) lease.keyByName.set(name, Buffer.from(key));
      this.leaseIdByKeyName.set(name, id);
    }
  }

  /**
   * Detaches keys from a lease (the key was deleted or overwritten without this lease). Keys not
   * attached to it are ignored. Raises ErrLeaseNotFound; nothing changes then.
   */
  detach(id: bigint, keys: Buffer[]): void {
    const lease = this.leaseById.get(id);
    if (lease === undefined) throw new ErrLeaseNotFound();
    for (const key of keys) {
      const name = key.toString("latin1");
      if (!lease.keyByName.delete(name)) continue;
      if (this.leaseIdByKeyName.get(name) === id) this.leaseIdByKeyName.delete(name);
    }
  }

  /** The lease a key is attached to, or 0n (etcd's NoLease) when none. */
  leaseOfKey(key: Buffer): bigint {
    return this.leaseIdByKeyName.get(key.toString("latin1")) ?? 0n;
  }

  /**
   * Keepalive, on the primary: the lease's expiry becomes now + its full TTL; returns that TTL in
   * seconds (what LeaseKeepAlive answers). When the lease carries a checkpoint, a clearing
   * checkpoint (remaining 0) is queued for checkpoints(), so that a later promote() does not
   * restart the countdown from a stale value.
   * Raises ErrNotPrimary when not primary (the server forwards to the leader); ErrLeaseNotFound
   * (LeaseKeepAlive answers TTL 0); ErrLeaseExpired when the lease is past its expiry and not
   * yet revoked: the caller awaits waitRevoked(id) before answering, as etcd's Renew blocks.
   */
  renew(id: bigint): number {
    if (!this.isPrimary()) throw new ErrNotPrimary();
    const lease = this.leaseById.get(id);
    if (lease === undefined) throw new ErrLeaseNotFound();
    const nowMs = this.clock.nowMs();
    if (lease.expiryMs <= nowMs) throw new ErrLeaseExpired();
    if (lease.checkpointedRemainingTtlSeconds > 0) this.pendingClears.add(id);
    lease.expiryMs = nowMs + lease.ttlSeconds * 1000;
    this.expiryQueue.set(id, lease.expiryMs);
    this.counters.renewed++;
    return lease.ttlSeconds;
  }

  /**
   * Settles once lease `id` is gone: resolves when it is revoked (or does not exist now), rejects
   * with ErrNotPrimary when this lessor is demoted or stopped first, or right away when it is not
   * primary or already has revokeWaitersMax waiters. Aborting `signal` rejects with its reason
   * and frees the slot.
   */
  waitRevoked(id: bigint, signal?: AbortSignal): Promise<void> {
    if (!this.isPrimary() || this.revokeWaiterCount >= this.revokeWaitersMax) {
      return Promise.reject(new ErrNotPrimary());
    }
    if (!this.leaseById.has(id)) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const waiter: RevokeWaiter = { resolve, reject };
      let waiters = this.revokeWaitersById.get(id);
      if (waiters === undefined) {
        waiters = [];
        this.revokeWaitersById.set(id, waiters);
      }
      waiters.push(waiter);
      this.revokeWaiterCount += 1;
      if (signal !== undefined) {
        const onAbort = (): void => {
          const list = this.revokeWaitersById.get(id);
          const index = list?.indexOf(waiter) ?? -1;
          if (list === undefined || index < 0) return;
          list.splice(index, 1);
          if (list.length === 0) this.revokeWaitersById.delete(id);
          this.revokeWaiterCount -= 1;
          reject(signal.reason);
        };
        signal.addEventListener("abort", onAbort, { once: true });
        waiter.detachSignal = () => signal.removeEventListener("abort", onAbort);
      }
    });
  }

  /** The live lease with this ID, or undefined. */
  lookup(id: bigint): Lease | undefined {
    return this.leaseById.get(id);
  }

  /**
   * Every lease, in ascending ID order, or with `order` "expiry" soonest expiry first (ties by
   * ID), which is the order etcd's leader lists leases in (LeaseLeases). The array is the
   * caller's; the leases are live. O(n log n).
   */
  leases(order: "id" | "expiry" = "id"): Lease[] {
    const leases = [...this.leaseById.values()];
    if (order === "expiry") return leases.sort((a, b) => compareNumbers(a.expiryMs, b.expiryMs) || compareIds(a.id, b.id));
    return leases.sort((a, b) => compareIds(a.id, b.id));
  }

  /**
   * The member became leader: the lessor turns primary and every lease's countdown restarts at
   * now + (its checkpointed remaining TTL, or else its full TTL) + `extendMs`. With at least
   * LEASE_REVOKE_RATE_PER_SECOND leases, expiries that would pile up beyond 3/4 of the revoke
   * rate in one second are pushed later (etcd's spreading), so a new leader does not revoke a
   * burst it cannot commit. O(n log n). Calling it while primary restarts the countdowns again.
   * Ignored after stop().
   */
  promote(extendMs: number): void {
    if (this.stopped) return;
    if (!Number.isFinite(extendMs) || extendMs < 0) throw new RangeError(`lessor: bad extendMs ${extendMs}`);
    this.primary = true;
    const nowMs = this.clock.nowMs();
    for (const lease of this.leaseById.values()) this.restartCountdown(lease, nowMs, extendMs);
    if (this.leaseById.size >= LEASE_REVOKE_RATE_PER_SECOND) this.spreadExpiries(nowMs, extendMs);
    this.logger?.info("lessor promoted", { leases: this.leaseById.size, extendMs });
  }

  /**
   * The member lost leadership: stop counting down (every expiry becomes "forever"), forget the
   * queues, and reject waitRevoked() waiters with ErrNotPrimary. O(n).
   */
  demote(): void {
    const wasPrimary = this.primary;
    this.dropLeaderState();
    if (wasPrimary) this.logger?.info("lessor demoted", { leases: this.leaseById.size });
  }

  /** Whether this lessor counts down, renews and reports expiries (leader, not stopped). */
  isPrimary(): boolean {
    return this.primary && !this.stopped;
  }

  /**
   * Primary only: IDs of leases past their expiry, at most `limit`, earliest expiry first. Each
   * reported lease is reported again every expiredLeasesRetryIntervalMs until it is revoked (its
   * revoke proposal may be lost). The server proposes a LeaseRevoke for each. O(limit log n).
   * Returns [] when not primary.
   */
  expiredLeases(limit: number): bigint[] {
    const expired: bigint[] = [];
    if (!this.isPrimary()) return expired;
    const nowMs = this.clock.nowMs();
    while (expired.length < limit) {
      const next = this.expiryQueue.peek();
      if (next === undefined || next.timeMs > nowMs) break;
      const lease = this.leaseById.get(next.id);
      if (lease === undefined) {
        this.expiryQueue.delete(next.id);
        continue;
      }
      if (lease.expiryMs > nowMs) {
        // Not expired after all (cannot happen while renew keeps the queue in step): requeue.
        this.expiryQueue.set(lease.id, lease.expiryMs);
        continue;
      }
      this.expiryQueue.set(lease.id, nowMs + this.expiredLeasesRetryIntervalMs);
      expired.push(lease.id);
    }
    return expired;
  }

  /**
   * Primary only: checkpoints to propose in one LeaseCheckpoint entry, at most `limit` (etcd
   * batches up to MAX_LEASE_CHECKPOINT_BATCH_SIZE). First the clearing checkpoints renew()
   * queued (remaining 0), then, with checkpoints enabled, each lease whose checkpoint is due and
   * that has less than its full TTL left: remaining = ceil(ms left / 1000). Reported checkpoints
   * are not rescheduled here: applying them (applyCheckpoint) schedules the next one. Returns []
   * when not primary. O((limit + a bounded skip budget) log n).
   */
  checkpoints(limit: number): LeaseCheckpoint[] {
    const checkpoints: LeaseCheckpoint[] = [];
    if (!this.isPrimary()) return checkpoints;
    for (const id of this.pendingClears) {
      if (checkpoints.length >= limit) return checkpoints;
      this.pendingClears.delete(id);
      const lease = this.leaseById.get(id);
      if (lease !== undefined && lease.checkpointedRemainingTtlSeconds > 0) {
        checkpoints.push({ id, remainingTtlSeconds: 0 });
      }
    }
    if (!this.enableCheckpoints) return checkpoints;
    const nowMs = this.clock.nowMs();
    let popsLeft = limit + CHECKPOINT_SKIP_BUDGET;
    while (checkpoints.length < limit && popsLeft > 0) {
      const next = this.checkpointQueue.peek();
      if (next === undefined || next.timeMs > nowMs) break;
      this.checkpointQueue.pop();
      popsLeft -= 1;
      const lease = this.leaseById.get(next.id);
      if (lease === undefined || lease.expiryMs <= nowMs) continue;
      const remainingTtlSeconds = Math.ceil((lease.expiryMs - nowMs) / 1000);
      if (remainingTtlSeconds >= lease.ttlSeconds) continue;
      checkpoints.push({ id: lease.id, remainingTtlSeconds });
    }
    if (checkpoints.length > 0) this.logger?.debug?.("lease checkpoints due", { count: checkpoints.length });
    return checkpoints;
  }

  /**
   * Applies a LeaseCheckpoint for one lease (every member): records its remaining TTL, which the
   * next promote() starts from (0 clears it). Does not change the current expiry. Persists the
   * record when persistCheckpoints is on. On the primary, schedules the lease's next checkpoint.
   * An unknown lease is ignored (it was revoked in between), as etcd does.
   */
  applyCheckpoint(id: bigint, remainingTtlSeconds: number): void {
    const lease = this.leaseById.get(id);
    if (lease === undefined) return;
    if (!Number.isSafeInteger(remainingTtlSeconds)) {
      throw new RangeError(`lessor: remaining TTL must be an integer, got ${remainingTtlSeconds}`);
    }
    lease.checkpointedRemainingTtlSeconds = remainingTtlSeconds;
    if (remainingTtlSeconds <= 0) this.pendingClears.delete(id);
    if (this.persistCheckpoints) this.persistence.put(id, lease.ttlSeconds, remainingTtlSeconds);
    if (this.isPrimary()) this.scheduleCheckpoint(lease, this.clock.nowMs());
  }

  private restartCountdown(lease: LessorLease, nowMs: number, extendMs: number): void {
    lease.expiryMs = nowMs + extendMs + lease.countdownSeconds() * 1000;
    this.expiryQueue.set(lease.id, lease.expiryMs);
    this.scheduleCheckpoint(lease, nowMs);
  }

  private scheduleCheckpoint(lease: LessorLease, nowMs: number): void {
    if (!this.enableCheckpoints) return;
    if (lease.countdownSeconds() > Math.trunc(this.checkpointIntervalMs / 1000)) {
      this.checkpointQueue.set(lease.id, nowMs + this.checkpointIntervalMs);
    }
  }

  /**
   * etcd's pile-up avoidance after promotion: walk the leases by expiry in one-second windows;
   * once a window holds more than 3/4 of the revoke rate, later leases in it are pushed back in
   * proportion to how far over the rate the window is.
   */
  private spreadExpiries(nowMs: number, extendMs: number): void {
    const leases = [...this.leaseById.values()].sort((a, b) => a.expiryMs - b.expiryMs || compareIds(a.id, b.id));
    const targetExpiresPerSecond = (3 * LEASE_REVOKE_RATE_PER_SECOND) / 4;
    let baseWindowMs = leases[0]!.expiryMs - nowMs;
    let nextWindowMs = baseWindowMs + 1000;
    let expires = 0;
    for (const lease of leases) {
      const remainingMs = lease.expiryMs - nowMs;
      if (remainingMs > nextWindowMs) {
        baseWindowMs = remainingMs;
        nextWindowMs = baseWindowMs + 1000;
        expires = 1;
        continue;
      }
      expires += 1;
      if (expires <= targetExpiresPerSecond) continue;
      // Leases already n seconds past the window's start get n seconds less of delay.
      const delayMs = Math.floor((1000 * expires) / targetExpiresPerSecond - (remainingMs - baseWindowMs));
      nextWindowMs = baseWindowMs + delayMs;
      this.restartCountdown(lease, nowMs, delayMs + extendMs);
    }
  }

  private dropLeaderState(): void {
    this.primary = false;
    for (const lease of this.leaseById.values()) lease.expiryMs = Infinity;
    this.expiryQueue.clear();
    this.checkpointQueue.clear();
    this.pendingClears.clear();
    for (const id of [...this.revokeWaitersById.keys()]) this.settleWaiters(id, new ErrNotPrimary());
  }

  private settleWaiters(id: bigint, error: Error | undefined): void {
    const waiters = this.revokeWaitersById.get(id);
    if (waiters === undefined) return;
    this.revokeWaitersById.delete(id);
    this.revokeWaiterCount -= waiters.length;
    for (const waiter of waiters) {
      waiter.detachSignal?.();
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
  }
}

function compareIds(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Like a - b, but Infinity == Infinity compares equal instead of giving NaN. */
function compareNumbers(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function assertInt64(id: bigint): void {
  if (typeof id !== "bigint" || id < INT64_MIN || id > INT64_MAX) {
    throw new RangeError(`lessor: lease ID ${String(id)} is not an int64`);
  }
}

function assertLeaseId(id: bigint): void {
  assertInt64(id);
  if (id === 0n) throw new RangeError("lessor: lease record with the reserved ID 0");
}
