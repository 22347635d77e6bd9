/**
 * `etcd-ts migrate --data-dir <dir> [--wal-dir <dir>]`: turns a stopped etcd 3.4 member's data
 * dir into an etcd-ts data dir in place, keeping the member what it was to its cluster: the same
 * member and cluster IDs, the same revisions, leases and auth data, the same raft HardState (term,
 * vote, commit), log entries and snapshot, so that `etcd-ts` started with the member's flags
 * restarts it and it rejoins its cluster without a restore.
 *
 * Steps:
 *   1. refuse while etcd runs (it holds flocks on its db and WAL segments; asked through flock(1));
 *      recognise etcd's layout (member/snap/db is a bbolt FILE, not our LevelDB directory) and
 *      read etcd's WAL and newest usable .snap (etcd-data-dir.ts), before anything is touched;
 *   2. move the original aside: <data-dir>/member → <data-dir>/member.etcd34-backup (and a
 *      separate --wal-dir to <wal-dir>.etcd34-backup); a data dir with a backup already there is
 *      refused;
 *   3. write etcd-ts's member dir: the backend from etcd's database (the mapping of
 *      server/etcd-database-image.ts), with the consistent index etcd stored (at least the
 *      snapshot's), raft's ConfState as of that index (the snapshot's plus the conf changes the
 *      log holds up to it) and the v2 store's image as of that index (etcd's snapshot's v2 store,
 *      then the conf changes and v2 requests after it, members and v2 clients' keys alike); the
 *      snapshot in our snap format; the WAL in ours: metadata naming the same IDs, the snapshot
 *      marker, every entry after the snapshot, the last HardState.
 * A failure in step 3 leaves the backup in place; moving it back restores the etcd 3.4 member.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { Backend, Bucket, bucketKey, encodeUint64, META_CONSISTENT_INDEX, META_TERM, type BackendImage } from "../mvcc/backend/backend.js";
import { BboltReader } from "../mvcc/backend/bbolt-reader.js";
import { ConfChangeType, EntryType, type ConfState, type Entry, type Snapshot } from "../raft/types.js";
import { decodeConfChange } from "../raft/conf-change-codec.js";
import { applyConfChangeToMembership, CONF_STATE_KEY, encodeConfState, memberOfConfChange, validateConfChange } from "../server/cluster/conf-change.js";
import { isV2StoreJson, Membership, V2_STORE_INDEX_META_KEY, V2_STORE_META_KEY } from "../server/cluster/membership.js";
import { catchUpV2Store, DISCARDING_SESSION } from "../server/apply/v2-applier.js";
import { etcdDatabaseImage } from "../server/etcd-database-image.js";
import { Snapshotter } from "../snap/snapshotter.js";
import { Wal } from "../wal/wal.js";
import type { Logger } from "../pkg/logger.js";
import { etcdWalSegments, loadEtcdSnapshot, readEtcdWal } from "./etcd-data-dir.js";

export class MigrateError extends Error {
  readonly code = "MIGRATE";
}

export interface MigrateOptions {
  dataDir: string;
  /** The member's separate WAL directory (etcd's --wal-dir), if it had one. */
  walDir?: string;
}

export interface MigrateResult {
  memberId: bigint;
  clusterId: bigint;
  /** The store's latest revision. */
  revision: number;
  term: number;
  commit: number;
  lastIndex: number;
  backupDir: string;
}

export const BACKUP_SUFFIX = ".etcd34-backup";

/** @throws MigrateError when the data dir is not a stopped etcd 3.4 member's; EtcdDataDirError for damaged files. */
export async function migrateEtcdDataDir(options: MigrateOptions, logger: Logger): Promise<MigrateResult> {
  const memberDir = path.join(options.dataDir, "member");
  const dbFile = path.join(memberDir, "snap", "db");
  const walDir = options.walDir ?? path.join(memberDir, "wal");
  const backupDir = memberDir + BACKUP_SUFFIX;
  const walBackup = options.walDir !== undefined ? options.walDir + BACKUP_SUFFIX : undefined;
  if (!existsSync(dbFile)) throw new MigrateError(`${dbFile} does not exist: not an etcd data dir`);
  if (statSync(dbFile).isDirectory()) throw new MigrateError(`${dbFile} is a LevelDB directory: ${options.dataDir} is already an etcd-ts data dir`);
  if (existsSync(backupDir)) throw new MigrateError(`${backupDir} exists: remove it or move it back first`);
  if (walBackup !== undefined && existsSync(walBackup)) throw new MigrateError(`${walBackup} exists: remove it or move it back first`);

  const holder = lockedFile([dbFile, ...etcdWalSegments(walDir)]);
  if (holder !== undefined) throw new MigrateError(`${holder} is locked: the etcd member is still running (stop it first)`);

  // 1. Read everything first: a data dir we cannot read is left untouched.
  const wal = readEtcdWal(walDir);
  const usable = wal.snapshots.filter((s) => s.index <= wal.hardState.commit);
  const snapshot = loadEtcdSnapshot(path.join(memberDir, "snap"), usable);
  if (snapshot === undefined && wal.entries[0] !== undefined && wal.entries[0].index > 1) {
    throw new MigrateError(`no snapshot file matches the WAL, whose entries start at ${wal.entries[0].index}`);
  }
  const reader = BboltReader.open(dbFile);
  const problems = reader.check();
  const ciRecord = reader.entries("meta")?.find(([k]) => k.toString() === "consistent_index")?.[1];
  reader.close();
  if (problems.length > 0) throw new MigrateError(`${dbFile} fails bbolt's integrity check: ${problems.slice(0, 5).join("; ")}`);
  const snapIndex = snapshot?.metadata.index ?? 0;
  const consistentIndex = Math.max(ciRecord?.length === 8 ? Number(ciRecord.readBigUInt64BE(0)) : 0, snapIndex);
  if (consistentIndex > wal.hardState.commit) throw new MigrateError(`the database's consistent index ${consistentIndex} is past the WAL's commit ${wal.hardState.commit}`);
  const after = wal.entries.filter((e) => e.index > snapIndex);
  const atCi = consistentIndex === snapIndex ? undefined : after.find((e) => e.index === consistentIndex);
  if (consistentIndex > snapIndex && atCi === undefined) throw new MigrateError(`the WAL lacks the entry at the database's consistent index ${consistentIndex}`);
  const confState = confStateAt(snapshot?.metadata.confState ?? { voters: [], learners: [] }, after, consistentIndex);

  // 2. Keep the original.
  renameSync(memberDir, backupDir);
  if (walBackup !== undefined) renameSync(options.walDir!, walBackup);
  logger.info("kept the etcd 3.4 data", { backup: backupDir, ...(walBackup ? { "wal-backup": walBackup } : {}) });
  const backupDb = path.join(backupDir, "snap", "db");

  // 3. The etcd-ts member dir.
  const snapDir = path.join(memberDir, "snap");
  mkdirSync(snapDir, { recursive: true, mode: 0o700 });
  const membership = v2StoreAt(wal.clusterId, snapshot, after, consistentIndex);
  const backend = await Backend.open(path.join(snapDir, "db"));
  let revision = 0;
  try {
    const image = etcdDatabaseImage(backupDb, { index: snapIndex, term: snapshot?.metadata.term ?? 0, confState });
    // The membership records pass through; the v2 store's image is etcd's as of the consistent index.
    async function* migrated(source: BackendImage): AsyncGenerator<[Buffer, Buffer]> {
      const overridden = [META_CONSISTENT_INDEX, META_TERM, CONF_STATE_KEY].map((k) => bucketKey("meta", k));
      for await (const [k, v] of source) {
        if (overridden.some((o) => o.equals(k))) continue;
        if (k[0] === Bucket.key && k.length >= 9) revision = Math.max(revision, Number(k.readBigUInt64BE(1)));
        yield [k, v];
      }
      yield [bucketKey("meta", V2_STORE_META_KEY), membership.v2.save()];
      yield [bucketKey("meta", V2_STORE_INDEX_META_KEY), encodeUint64(membership.v2Index)];
      yield [bucketKey("meta", CONF_STATE_KEY), encodeConfState(confState)];
      yield [bucketKey("meta", META_CONSISTENT_INDEX), encodeUint64(consistentIndex)];
      yield [bucketKey("meta", META_TERM), encodeUint64(atCi?.term ?? snapshot?.metadata.term ?? 0)];
    }
    await backend.replace(migrated(image));
  } finally {
    await backend.close();
  }
  if (snapshot !== undefined) await new Snapshotter({ dir: snapDir }, { logger }).save(snapshot);

  mkdirSync(path.dirname(walDir), { recursive: true, mode: 0o700 });
  const out = await Wal.create(walDir, Buffer.from(JSON.stringify({ memberId: wal.memberId.toString(16), clusterId: wal.clusterId.toString(16) })), { logger });
  try {
    if (snapshot !== undefined) await out.saveSnapshot({ index: snapIndex, term: snapshot.metadata.term, confState: snapshot.metadata.confState });
    await out.save(wal.hardState, after, { sync: true });
  } finally {
    await out.close();
  }
  const lastIndex = after.at(-1)?.index ?? snapIndex;
  logger.info("migrated an etcd 3.4 data dir", {
    "data-dir": options.dataDir,
    "member-id": wal.memberId,
    "cluster-id": wal.clusterId,
    term: wal.hardState.term,
    commit: wal.hardState.commit,
    "last-index": lastIndex,
    "snapshot-index": snapIndex,
    "consistent-index": consistentIndex,
  });
  return { memberId: wal.memberId, clusterId: wal.clusterId, revision, term: wal.hardState.term, commit: wal.hardState.commit, lastIndex, backupDir };
}

/**
 * The first of `files` another process holds an flock on (etcd locks its bbolt file and its WAL
 * segments while it runs), asked through util-linux's flock(1); undefined when none is, or when
 * flock(1) is not installed (the check is then skipped).
 */
function lockedFile(files: string[]): string | undefined {
  for (const f of files) {
    const r = spawnSync("flock", ["--nonblock", "--shared", f, "true"], { stdio: "ignore" });
    if (r.error !== undefined) return undefined;
    if (r.status !== 0) return f;
  }
  return undefined;
}

/**
 * etcd's v2 store (the membership's and its v2 clients' keys) as of `index`, as etcd 3.4 would
 * hold it after a restart: its snapshot's (or an empty one without a snapshot), then the entries
 * after it up to `index`, conf changes and v2 requests, applied to the v2 store alone.
 * @throws MigrateError when the snapshot's data is not a v2 store.
 */
function v2StoreAt(clusterId: bigint, snapshot: Snapshot | undefined, after: Entry[], index: number): Membership {
  const membership = new Membership(clusterId);
  if (snapshot !== undefined) {
    if (!isV2StoreJson(snapshot.data)) throw new MigrateError(`the snapshot at ${snapshot.metadata.index} does not hold a v2 store`);
    membership.recoverFromV2Store(snapshot.data, snapshot.metadata.index, DISCARDING_SESSION);
  }
  let confState: ConfState = snapshot?.metadata.confState ?? { voters: [], learners: [] };
  for (const e of after) {
    if (e.index > index) break;
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      const m = memberOfConfChange(cc);
      membership.v2Index = e.index;
      confState = confStateAt(confState, [e], e.index);
      if (validateConfChange(membership, cc, m) === undefined) applyConfChangeToMembership(membership, cc, m, confState, DISCARDING_SESSION);
    } else {
      catchUpV2Store(membership, e);
    }
  }
  membership.v2Index = index;
  return membership;
}

/** Raft's ConfState after the conf changes among `entries` up to `index`, from `base`. */
function confStateAt(base: ConfState, entries: Entry[], index: number): ConfState {
  const voters = new Set(base.voters);
  const learners = new Set(base.learners);
  for (const e of entries) {
    if (e.index > index) break;
    if (e.type !== EntryType.ConfChange) continue;
    const cc = decodeConfChange(e.data);
    switch (cc.type) {
      case ConfChangeType.AddNode:
        voters.add(cc.nodeId);
        learners.delete(cc.nodeId);
        break;
      case ConfChangeType.AddLearnerNode:
        if (!voters.has(cc.nodeId)) learners.add(cc.nodeId);
        break;
      case ConfChangeType.RemoveNode:
        voters.delete(cc.nodeId);
        learners.delete(cc.nodeId);
        break;
      default:
        break;
    }
  }
  return { voters: [...voters], learners: [...learners] };
}
