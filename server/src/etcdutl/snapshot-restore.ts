/**
 * `etcd-ts snapshot restore <file>`: a new etcd-ts data dir from an etcd database snapshot (a
 * bbolt file from `etcdctl snapshot save` against etcd-ts or etcd, or a db copied out of a data
 * dir), for a member of a NEW cluster described by --initial-cluster and --initial-cluster-token.
 * Restoring the same file for every member of the initial cluster gives data dirs that form that
 * cluster, as etcd's restore does.
 *
 * What is written (as etcd 3.4's restore does, in etcd-ts's formats):
 *   - the backend (<data-dir>/member/snap/db, LevelDB): every key revision, lease, alarm and auth
 *     record of the file; the old membership dropped and the new cluster's members written; the
 *     consistent index and term set to (N, 1), N = the number of members, so the new raft log's
 *     entries are applied on top; the v2 store image with the new members and raft's ConfState;
 *   - a raft snapshot at (N, 1) whose data is that v2 store's JSON (<data-dir>/member/snap);
 *   - a WAL (<data-dir>/member/wal or --wal-dir) with the member's and cluster's IDs as etcd
 *     computes them, the N AddNode conf changes at term 1, HardState {term 1, vote: the lowest
 *     member ID, commit N} and the snapshot marker (N, 1).
 * The member then restarts from that WAL (every initial-cluster flag given to `etcd-ts` is
 * ignored, as it is for any restart) and elects a leader with its peers.
 *
 * --bump-revision R --mark-compacted (etcd 3.6): the store's latest revision is raised by R (an
 * empty-valued marker at revision {latest + R, 0} in the key bucket, which moves the store's
 * current revision) and compaction is scheduled at that revision: every read or watch at or below
 * it fails as compacted, so no client that saw revisions of the cluster before the restore sees
 * them repeated with other content.
 *
 * The member dir is written as <data-dir>/member.restoring and renamed to member when complete;
 * a data dir holding only that leftover (an interrupted restore) is cleaned and restored again,
 * so a retried restore (e.g. a Kubernetes init container) succeeds.
 *
 * Integrity: a file from `snapshot save` ends with the SHA-256 of the rest (its length is then 32
 * more than a multiple of 512); it is checked unless --skip-hash-check. A file without it (a db
 * copied from a data dir) needs --skip-hash-check. Errors carry etcd's texts.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { Backend, bucketKey, Bucket, encodeUint64, META_CONSISTENT_INDEX, META_TERM, type BackendImage, type BucketName } from "../mvcc/backend/backend.js";
import { encodeRevisionValue } from "../mvcc/revision.js";
import { EntryType, ConfChangeType, type ConfState, type Entry } from "../raft/types.js";
import { encodeConfChange } from "../raft/conf-change-codec.js";
import { CONF_STATE_KEY, encodeConfState } from "../server/cluster/conf-change.js";
import { computeClusterId, computeMemberId } from "../server/cluster/member-id.js";
import { Membership, encodeMember, type MemberRecord } from "../server/cluster/membership.js";
import { etcdDatabaseImage } from "../server/etcd-database-image.js";
import { META_MVCC_CONSISTENT_INDEX } from "../server/mvcc-store-port.js";
import type { WriteSession } from "../server/store-port.js";
import { Snapshotter } from "../snap/snapshotter.js";
import { Wal } from "../wal/wal.js";
import type { Logger } from "../pkg/logger.js";
import { fsyncDir } from "../pkg/fsync-dir.js";

/** A restore refused or failed; `message` is what etcd's tools print after "Error: ". */
export class RestoreError extends Error {
  readonly code = "RESTORE";
}

export interface RestoreOptions {
  snapshotPath: string;
  /** This member's name; it must be in `initialCluster`. */
  name: string;
  /** The checked initial cluster (name → sorted peer URLs), e.g. from etcdmain's verifyBootstrap. */
  initialCluster: Map<string, string[]>;
  initialClusterToken: string;
  /** Must not exist or be empty. */
  dataDir: string;
  /** Default <dataDir>/member/wal; must not exist when given. */
  walDir?: string;
  skipHashCheck: boolean;
  /** Raise the latest revision by this much (0: no change); requires markCompacted. */
  bumpRevision: number;
  markCompacted: boolean;
}

export interface RestoreResult {
  memberId: bigint;
  clusterId: bigint;
  /** The store's latest revision after the restore (bumped, if asked). */
  revision: number;
  /** The revision compaction is scheduled at (markCompacted), else undefined. */
  compactedAt?: number;
}

const SHA256_BYTES = 32;
/** Where the member dir is written before it is renamed to `member`. */
const STAGING_DIR = "member.restoring";

/** Whether a file of `n` bytes carries the SHA-256 trailer `snapshot save` appends. */
export function hasSnapshotHash(n: number): boolean {
  return n % 512 === SHA256_BYTES;
}

/** Go's `%v` of a byte slice: "[1 2 3]". */
function goBytes(b: Buffer): string {
  return "[" + [...b].join(" ") + "]";
}

/**
 * Checks the snapshot's SHA-256 trailer as etcd does.
 * @throws RestoreError "snapshot missing hash but --skip-hash-check=false" or "expected sha256 .., got .."
 */
export function verifySnapshotHash(filePath: string, skipHashCheck: boolean): void {
  const fd = openSync(filePath, "r");
  try {
    const size = fstatSync(fd).size;
    const hashed = hasSnapshotHash(size);
    if (!hashed) {
      if (!skipHashCheck) throw new RestoreError("snapshot missing hash but --skip-hash-check=false");
      return;
    }
    if (skipHashCheck) return;
    const h = createHash("sha256");
    const chunk = Buffer.alloc(1 << 20);
    let pos = 0;
    const end = size - SHA256_BYTES;
    while (pos < end) {
      const n = readSync(fd, chunk, 0, Math.min(chunk.length, end - pos), pos);
      if (n <= 0) throw new RestoreError(`unexpected end of ${filePath}`);
      h.update(chunk.subarray(0, n));
      pos += n;
    }
    const stored = Buffer.alloc(SHA256_BYTES);
    readSync(fd, stored, 0, SHA256_BYTES, end);
    const actual = h.digest();
    if (!stored.equals(actual)) throw new RestoreError(`expected sha256 ${goBytes(stored)}, got ${goBytes(actual)}`);
  } finally {
    closeSync(fd);
  }
}

/** The new cluster's members, as etcd's NewClusterFromURLsMap makes them, sorted by ID. */
export function newClusterMembers(cluster: Map<string, string[]>, token: string): MemberRecord[] {
  const members = [...cluster.entries()].map(([name, urls]) => ({
    id: computeMemberId(urls, token),
    name,
    peerUrls: [...urls].sort(),
    clientUrls: [],
    isLearner: false,
  }));
  return members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** A WriteSession that only collects staged records (the membership's writes, as image pairs). */
function collectingSession(into: Array<[Buffer, Buffer]>): WriteSession {
  return {
    stage(bucket: BucketName, key: Buffer, value: Buffer | undefined) {
      if (value !== undefined) into.push([bucketKey(bucket, key), value]);
    },
    stageLatest(key: Buffer, value: Buffer) {
      into.push([bucketKey("meta", key), value]);
    },
  } as unknown as WriteSession;
}

/** The member-related buckets of the source that the new membership replaces. */
const DROPPED_BUCKETS = new Set<number>([Bucket.members, Bucket.membersRemoved]);

/**
 * Restores `options.snapshotPath` into a new data dir (see the file comment).
 * @throws RestoreError for etcd's refusals; file-system and format errors as they come (a partly
 *   written member.restoring is then left behind, and replaced by the next restore into the dir).
 */
export async function restoreSnapshot(options: RestoreOptions, logger: Logger): Promise<RestoreResult> {
  const own = options.initialCluster.get(options.name);
  if (own === undefined) throw new RestoreError(`couldn't find local name "${options.name}" in the initial cluster configuration`);
  // The member dir is written under a temporary name and renamed when complete, so an interrupted
  // restore never leaves a data dir a member would start from; a rerun removes the leftover.
  const staging = path.join(options.dataDir, STAGING_DIR);
  if (existsSync(options.dataDir)) {
    const entries = readdirSync(options.dataDir);
    if (entries.length === 1 && entries[0] === STAGING_DIR) {
      logger.warn("removing an interrupted restore", { dir: staging });
      rmSync(staging, { recursive: true, force: true });
    } else if (entries.length > 0) {
      throw new RestoreError(`data-dir ${JSON.stringify(options.dataDir)} not empty or could not be read`);
    }
  }
  const walDir = options.walDir ?? path.join(staging, "wal");
  if (options.walDir !== undefined && existsSync(options.walDir)) throw new RestoreError(`wal-dir ${JSON.stringify(options.walDir)} exists`);
  if (options.bumpRevision > 0 !== options.markCompacted) throw new RestoreError("--mark-compacted required if --revision-bump > 0");
  const snapDir = path.join(staging, "snap");
  logger.info("restoring snapshot", {
    path: options.snapshotPath,
    "wal-dir": options.walDir ?? path.join(options.dataDir, "member", "wal"),
    "data-dir": options.dataDir,
    "snap-dir": path.join(options.dataDir, "member", "snap"),
  });

  verifySnapshotHash(options.snapshotPath, options.skipHashCheck);

  const members = newClusterMembers(options.initialCluster, options.initialClusterToken);
  const self = members.find((m) => m.name === options.name)!;
  const clusterId = computeClusterId(members.map((m) => m.id));
  const commit = members.length;
  const term = 1;
  const confState: ConfState = { voters: members.map((m) => m.id), learners: [] };

  // The new membership: member records and the v2 store image, as the member's own add writes them.
  const membership = new Membership(clusterId);
  membership.v2Index = commit; // the image below is the v2 store as of the last conf change
  const membershipRecords: Array<[Buffer, Buffer]> = [];
  const session = collectingSession(membershipRecords);
  for (const m of members) membership.add(m, session);
  const v2Json = membership.v2.save();

  mkdirSync(snapDir, { recursive: true, mode: 0o700 });
  const backend = await Backend.open(path.join(snapDir, "db"));
  const revisions = { latest: 0, compactedAt: undefined as number | undefined };
  try {
    const source = etcdDatabaseImage(options.snapshotPath, { index: commit, term, confState });
    await backend.replace(restoredImage(source, { commit, term, confState, membershipRecords, bumpRevision: options.bumpRevision, markCompacted: options.markCompacted }, revisions));
  } finally {
    await backend.close();
  }
  if (options.bumpRevision > 0) {
    logger.info("bumped latest revision", { "new-latest-revision": revisions.latest, "bump-amount": options.bumpRevision });
  }
  if (revisions.compactedAt !== undefined) logger.info("marked revision compacted", { revision: revisions.compactedAt });

  await new Snapshotter({ dir: snapDir }, { logger }).save({ metadata: { index: commit, term, confState }, data: v2Json });

  mkdirSync(path.dirname(walDir), { recursive: true, mode: 0o700 });
  const wal = await Wal.create(walDir, Buffer.from(JSON.stringify({ memberId: self.id.toString(16), clusterId: clusterId.toString(16) })), { logger });
  try {
    const entries: Entry[] = members.map((m, i) => ({
      term,
      index: i + 1,
      type: EntryType.ConfChange,
      data: encodeConfChange({ id: 0n, type: ConfChangeType.AddNode, nodeId: m.id, context: encodeMember(m) }),
    }));
    await wal.save({ term, vote: members[0]!.id, commit }, entries, { sync: true });
    await wal.saveSnapshot({ index: commit, term, confState });
  } finally {
    await wal.close();
  }
  await fsyncDir(staging);
  renameSync(staging, path.join(options.dataDir, "member"));
  await fsyncDir(options.dataDir);
  logger.info("restored snapshot", { path: options.snapshotPath, "data-dir": options.dataDir, "member-id": self.id, "cluster-id": clusterId });
  return { memberId: self.id, clusterId, revision: revisions.latest, compactedAt: revisions.compactedAt };
}

interface RestoreImageOptions {
  commit: number;
  term: number;
  confState: ConfState;
  membershipRecords: Array<[Buffer, Buffer]>;
  bumpRevision: number;
  markCompacted: boolean;
}

const META_OVERRIDDEN = [META_CONSISTENT_INDEX, META_TERM, META_MVCC_CONSISTENT_INDEX, CONF_STATE_KEY].map((k) => bucketKey("meta", k));
const SCHEDULED_COMPACT_KEY = bucketKey("meta", Buffer.from("scheduledCompactRev"));

/**
 * The source image with the restore's changes: the old membership out, the new one in, the raft
 * position (commit, term, ConfState) in place of the source's, and the revision bump.
 * `revisions` receives the latest revision (after the bump) and the compaction mark.
 */
async function* restoredImage(
  source: BackendImage,
  o: RestoreImageOptions,
  revisions: { latest: number; compactedAt: number | undefined },
): AsyncGenerator<[Buffer, Buffer]> {
  let scheduled: Buffer | undefined;
  for await (const [k, v] of source) {
    const bucket = k[0]!;
    if (DROPPED_BUCKETS.has(bucket)) continue;
    if (META_OVERRIDDEN.some((m) => m.equals(k))) continue;
    if (k.equals(SCHEDULED_COMPACT_KEY)) {
      scheduled = v;
      continue;
    }
    if (bucket === Bucket.key && k.length >= 9) revisions.latest = Math.max(revisions.latest, Number(k.readBigUInt64BE(1)));
    yield [k, v];
  }
  if (o.bumpRevision > 0) {
    revisions.latest += o.bumpRevision;
    // etcd 3.6's marker: an empty value at {latest, 0}; the store's current revision moves to it.
    yield [Buffer.concat([Buffer.from([Bucket.key]), encodeRevisionValue(revisions.latest)]), Buffer.alloc(0)];
  }
  if (o.markCompacted) {
    revisions.compactedAt = revisions.latest;
    yield [SCHEDULED_COMPACT_KEY, encodeRevisionValue(revisions.latest)];
  } else if (scheduled !== undefined) {
    yield [SCHEDULED_COMPACT_KEY, scheduled];
  }
  for (const rec of o.membershipRecords) yield rec;
  yield [bucketKey("meta", CONF_STATE_KEY), encodeConfState(o.confState)];
  yield [bucketKey("meta", META_MVCC_CONSISTENT_INDEX), encodeUint64(o.commit)];
  yield [bucketKey("meta", META_CONSISTENT_INDEX), encodeUint64(o.commit)];
  yield [bucketKey("meta", META_TERM), encodeUint64(o.term)];
}
