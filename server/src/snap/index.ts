/**
 * Snapshot files: raft snapshots (snapshotter.ts, or memory-snapshotter.ts in memory, both
 * SnapshotStores) and streamed state-machine images (snapshot-stream.ts).
 */
export {
  Snapshotter,
  snapshotFileName,
  parseSnapshotFileName,
  encodeSnapshotFile,
  decodeSnapshotFile,
  type SnapshotterOptions,
  type SnapshotterDependencies,
  type SnapLogger,
} from "./snapshotter.js";
export {
  createSnapshotWriter,
  openSnapshotStream,
  readSnapshotTrailer,
  verifySnapshotStreamFile,
  SnapshotWriter,
  type SnapshotStreamInfo,
} from "./snapshot-stream.js";
export type { SnapshotStore } from "./snapshot-store.js";
export { MemorySnapDir, MemorySnapshotter, type MemorySnapDirOptions, type MemorySnapshotterOptions } from "./memory-snapshotter.js";
export { ErrSnapshotCorrupt, ErrNoSnapshot } from "./errors.js";
