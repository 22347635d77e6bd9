/** The write-ahead log (see wal.ts for the on-disk layout and record-codec.ts for the format). */
export { Wal, SEGMENT_SIZE_BYTES_DEFAULT, segmentName, parseSegmentName, type WalOptions, type WalLogger, type WalObserver } from "./wal.js";
export type { WalSnapshot } from "./record-codec.js";
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
