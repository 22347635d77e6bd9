/** Snapshot files: raft snapshots (snapshotter.ts) and streamed state-machine images (snapshot-stream.ts). */
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
export { ErrSnapshotCorrupt, ErrNoSnapshot } from "./errors.js";
