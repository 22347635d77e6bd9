/**
 * The read-only view of one lease that the lessor hands out, and etcd's rounding rules for the
 * TTLs that leave the server.
 */

/**
 * One lease, as seen from outside the lessor. The object is live: the lessor updates it in place
 * (expiry on renew/promote/demote, keys on attach/detach), so read it when you need the value and
 * do not keep derived numbers around. After the lease is revoked the object is no longer updated.
 */
export interface Lease {
  /** etcd's lease ID: a non-zero int64. */
  readonly id: bigint;
  /** The granted TTL in seconds, after raising it to the lessor's minimum TTL. */
  readonly ttlSeconds: number;
  /**
   * The last checkpointed remaining TTL in seconds, or 0 when none is set (etcd's convention: 0
   * means "use the full TTL"). The next promote() starts the lease's countdown from this value.
   */
  readonly checkpointedRemainingTtlSeconds: number;
  /**
   * When the lease expires, in the lessor clock's milliseconds; Infinity while the lessor is not
   * primary (followers never expire leases: the countdown restarts when a member is promoted).
   */
  readonly expiryMs: number;
  /** Number of attached keys. */
  readonly keyCount: number;
  /** Milliseconds until expiry at `nowMs` (negative once expired; Infinity when not counting down). */
  remainingTtlMs(nowMs: number): number;
  /**
   * The attached keys in ascending byte order (the order etcd deletes them in on revoke). The
   * array is the caller's; the Buffers are shared with the lessor and must not be mutated.
   */
  keys(): Buffer[];
}

/**
 * What etcd 3.4 answers for a lease that is not counting down: `int64(time.Duration(MaxInt64)
 * .Seconds())`, the remaining TTL of a lease whose expiry is "forever".
 */
export const FOREVER_TTL_SECONDS = 9223372036;

/**
 * The `TTL` etcd 3.4 puts in a LeaseTimeToLive response for a lease that still exists:
 * `int64(lease.Remaining().Seconds())`, i.e. the remaining time in seconds truncated toward zero.
 * So a live lease with 0.9 s left reports 0, and a lease that expired but is not revoked yet
 * reports 0 for its first second past expiry, then -1, -2, ... (a lease that no longer exists is
 * answered with TTL -1 by the gRPC layer, not here).
 */
export function timeToLiveSeconds(lease: Lease, nowMs: number): number {
  const remainingMs = lease.remainingTtlMs(nowMs);
  if (remainingMs === Infinity) return FOREVER_TTL_SECONDS;
  // `+ 0` turns a truncated -0 into 0.
  return Math.trunc(remainingMs / 1000) + 0;
}
