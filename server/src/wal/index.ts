/**
 * The write-ahead log (see wal.ts for the on-disk layout and record-codec.ts for the format;
 * wal-dir.ts for the WalDir/WalLog contract, memory-wal.ts for the in-memory log).
 */
export {
  Wal,
  SEGMENT_SIZE_BYTES_DEFAULT,
  REWRITE_BYTES_MAX_DEFAULT,
  segmentName,
  parseSegmentName,
  type SyncedAppendFile,
  type WalOptions,
  type WalLogger,
  type WalObserver,
} from "./wal.js";
export type { WalSnapshot } from "./record-codec.js";
export { FsWalDir, type FsWalDirOptions, type OpenedWal, type WalDir, type WalLog } from "./wal-dir.js";
export {
  MemoryWal,
  MemoryWalDir,
  type MemoryWalDirDependencies,
  type MemoryWalDirOptions,
  type WalCrashOutcome,
} from "./memory-wal.js";
export type { Preallocation } from "./fs-durable.js";
export {
  ErrWalCorrupt,
  ErrWalLocked,
  ErrWalExists,
  ErrWalNotFound,
  ErrSnapshotNotFound,
  ErrSnapshotMismatch,
  ErrWalClosed,
  ErrWalFailed,
} from "./errors.js";
