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
