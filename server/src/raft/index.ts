/** The pure Raft core of etcd-ts. See raw-node.ts for the driver contract. */
export * from "./types.js";
export * from "./rng.js";
export * from "./storage.js";
export * from "./raw-node.js";
export { Raft } from "./raft.js";
export { RaftLog } from "./raft-log.js";
export { UnstableLog } from "./log-unstable.js";
export { Progress, ProgressTracker, Inflights, type ProgressState } from "./progress.js";
export { encodeConfChange, decodeConfChange, ErrConfChangeDecode } from "./conf-change-codec.js";
export { RaftInvariantError, describeEntry, describeMessage, entrySizeBytes, limitSize, isLocalMsg } from "./util.js";
