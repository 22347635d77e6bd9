/**
 * Typed errors of the WAL. Operating errors (a lock held by another process, a missing snapshot
 * marker) are for the caller to handle; `ErrWalCorrupt` means the log cannot be trusted and a
 * human must look at it (etcd-ts never drops acknowledged records silently).
 */

/** Mid-log corruption: a damaged record with valid records after it, or damage in a sealed segment. */
export class ErrWalCorrupt extends Error {
  readonly code = "WAL_CORRUPT";
  /** @param path the segment file; @param offsetBytes where the damaged record starts. */
  constructor(
    readonly path: string,
    readonly offsetBytes: number,
    readonly reason: string,
  ) {
    super(`wal: corrupt record in ${path} at offset ${offsetBytes}: ${reason}`);
    this.name = "ErrWalCorrupt";
  }
}

/** Another process (or another Wal in this process) holds the directory's lock. */
export class ErrWalLocked extends Error {
  readonly code = "WAL_LOCKED";
  constructor(readonly dir: string, readonly holderPid: number) {
    super(`wal: ${dir} is locked by process ${holderPid}`);
    this.name = "ErrWalLocked";
  }
}

/** `Wal.create` on a directory that already holds segments. */
export class ErrWalExists extends Error {
  readonly code = "WAL_EXISTS";
  constructor(readonly dir: string) {
    super(`wal: ${dir} already contains a write-ahead log`);
    this.name = "ErrWalExists";
  }
}

/** `Wal.open` on a directory without segments, or without one that can hold the requested index. */
export class ErrWalNotFound extends Error {
  readonly code = "WAL_NOT_FOUND";
  constructor(readonly dir: string, detail: string) {
    super(`wal: ${detail} in ${dir}`);
    this.name = "ErrWalNotFound";
  }
}

/** The snapshot marker `open` starts from is not in the log (etcd: ErrSnapshotNotFound). */
export class ErrSnapshotNotFound extends Error {
  readonly code = "WAL_SNAPSHOT_NOT_FOUND";
  constructor(readonly index: number, readonly term: number) {
    super(`wal: snapshot marker {index: ${index}, term: ${term}} not found`);
    this.name = "ErrSnapshotNotFound";
  }
}

/** The log holds a snapshot marker at the requested index with another term. */
export class ErrSnapshotMismatch extends Error {
  readonly code = "WAL_SNAPSHOT_MISMATCH";
  constructor(readonly index: number, readonly term: number, readonly walTerm: number) {
    super(`wal: snapshot marker at index ${index} has term ${walTerm}, expected ${term}`);
    this.name = "ErrSnapshotMismatch";
  }
}

/** Operation on a closed Wal. */
export class ErrWalClosed extends Error {
  readonly code = "WAL_CLOSED";
  constructor() {
    super("wal: closed");
    this.name = "ErrWalClosed";
  }
}

/**
 * A write, fsync or segment cut failed. The Wal refuses all further writes (what reached the disk
 * is unknown); the member must stop and recover by reopening the log.
 */
export class ErrWalFailed extends Error {
  readonly code = "WAL_FAILED";
  constructor(override readonly cause: unknown) {
    super(`wal: write failed, log is unusable until reopened: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "ErrWalFailed";
  }
}
