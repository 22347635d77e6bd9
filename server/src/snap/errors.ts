/** Typed errors of the snapshot files. */

/** A snapshot file failed verification (magic, length, or CRC). */
export class ErrSnapshotCorrupt extends Error {
  readonly code = "SNAP_CORRUPT";
  constructor(readonly path: string, readonly reason: string) {
    super(`snap: ${path} is corrupt: ${reason}`);
    this.name = "ErrSnapshotCorrupt";
  }
}

/** No usable snapshot file (etcd: ErrNoSnapshot). */
export class ErrNoSnapshot extends Error {
  readonly code = "SNAP_NONE";
  constructor(readonly dir: string) {
    super(`snap: no available snapshot in ${dir}`);
    this.name = "ErrNoSnapshot";
  }
}
