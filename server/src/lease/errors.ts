/**
 * The lessor's typed errors. Messages are etcd's lease-package messages; the gRPC edge translates
 * them (once, in its table) to etcd's wire errors, e.g. ErrLeaseNotFound becomes
 * `etcdserver: requested lease not found` (NOT_FOUND) and ErrLeaseTTLTooLarge becomes
 * `etcdserver: too large lease TTL` (OUT_OF_RANGE).
 */

/** Stable codes for the lessor's errors, for the edge's translation table and for logs. */
export type LeaseErrorCode =
  | "LEASE_NOT_FOUND"
  | "LEASE_EXISTS"
  | "LEASE_TTL_TOO_LARGE"
  | "NOT_PRIMARY"
  | "LEASE_EXPIRED";

/** Base class of every error the lessor raises on purpose. */
export abstract class LeaseError extends Error {
  abstract readonly code: LeaseErrorCode;
}

/** The lease ID is unknown (never granted, already revoked, or the reserved ID 0). */
export class ErrLeaseNotFound extends LeaseError {
  readonly code = "LEASE_NOT_FOUND" as const;
  constructor() {
    super("lease not found");
    this.name = "ErrLeaseNotFound";
  }
}

/** grant() was asked for an ID that is already in use. */
export class ErrLeaseExists extends LeaseError {
  readonly code = "LEASE_EXISTS" as const;
  constructor() {
    super("lease already exists");
    this.name = "ErrLeaseExists";
  }
}

/** grant() was asked for a TTL above MAX_LEASE_TTL_SECONDS. */
export class ErrLeaseTTLTooLarge extends LeaseError {
  readonly code = "LEASE_TTL_TOO_LARGE" as const;
  constructor() {
    super("too large lease TTL");
    this.name = "ErrLeaseTTLTooLarge";
  }
}

/**
 * This lessor is not the primary (the member is not the Raft leader, or the lessor was stopped).
 * Callers forward the request to the leader, or retry once a leader is known.
 */
export class ErrNotPrimary extends LeaseError {
  readonly code = "NOT_PRIMARY" as const;
  constructor() {
    super("not a primary lessor");
    this.name = "ErrNotPrimary";
  }
}

/**
 * renew() found the lease past its expiry and not yet revoked: its revocation may already be on
 * its way through Raft. etcd's Renew blocks in this case; etcd-ts's renew() is synchronous and
 * raises this instead. The caller must not answer the client yet: it awaits
 * `Lessor.waitRevoked(id)`, which settles when the lease is revoked (answer "lease not found")
 * or when this lessor stops being primary (answer/forward as for ErrNotPrimary). This error never
 * reaches the wire.
 */
export class ErrLeaseExpired extends LeaseError {
  readonly code = "LEASE_EXPIRED" as const;
  constructor() {
    super("lease expired");
    this.name = "ErrLeaseExpired";
  }
}
