/**
 * Typed MVCC errors. Messages are etcd's, byte for byte: the gRPC edge forwards them and clients
 * match on the text.
 */

export type MvccErrorCode = "COMPACTED" | "FUTURE_REV" | "CLOSED";

export class MvccError extends Error {
  constructor(
    readonly code: MvccErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "MvccError";
  }
}

/** The requested revision is below the compact revision: the data is gone. */
export class ErrCompacted extends MvccError {
  constructor(readonly compactRevision: number) {
    super("COMPACTED", "mvcc: required revision has been compacted");
  }
}

/** The requested revision is above the current revision. */
export class ErrFutureRev extends MvccError {
  constructor(readonly currentRevision: number) {
    super("FUTURE_REV", "mvcc: required revision is a future revision");
  }
}

/** The store was closed. */
export class ErrClosed extends MvccError {
  constructor() {
    super("CLOSED", "mvcc: closed");
  }
}

/**
 * Reading the backend failed, or it lacks a revision the index holds: the store can no longer be
 * trusted. Not an MvccError, so nothing answers it to a client as a request's outcome: an apply
 * that meets it stops the member (etcd panics on an unexpected error inside a txn), since
 * answering it, or taking a compare that could not read as false, would let this member's state
 * machine part from the others'.
 */
export class ErrStoreRead extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`mvcc: ${message}`, options);
    this.name = "ErrStoreRead";
  }
}
