/**
 * etcd-ts MVCC layer: the revisioned key-value store, its watchers, and the LevelDB backend.
 * See kv-store.ts for the storage design and the write handshake with the apply loop.
 */
export { Backend, BackendBatch, Bucket, BackendFailedError, BackendClosedError, bucketKey, encodeUint64, decodeUint64 } from "./backend/backend.js";
export type { BackendImage, BackendOptions, BucketName, IterateRange } from "./backend/backend.js";
export { MvccStore, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT } from "./kv-store.js";
export type { MvccStoreOptions, MvccStoreDeps, RangeOptions, RangeResult, PutResult, WriteTxn, HashKVResult } from "./kv-store.js";
export type { KeyValue, KeyInfo, Event } from "./key-value.js";
export { encodeKeyValue, decodeKeyValue, NO_LEASE } from "./key-value.js";
export { MvccError, ErrCompacted, ErrFutureRev, ErrClosed } from "./errors.js";
export type { MvccErrorCode } from "./errors.js";
export type { Watcher, WatchSink, WatchMessage, WatchEvents, WatchCompacted, WatchOptions, WatchFilter, WatchHubOptions } from "./watch-hub.js";
