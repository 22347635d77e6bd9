/**
 * Bootstrap: a member from its disk (etcd's bootstrap). A member whose WAL exists restarts from
 * it; one without a WAL starts a new cluster from its initial cluster configuration.
 *
 * Restart, in order:
 *   1. the newest snapshot the WAL has a marker for; the WAL is replayed on top of it;
 *   2. the backend is applied up to its consistent index, with raft's configuration as of then
 *      (stored next to the data): raft resumes from there instead of re-applying what the
 *      backend already holds; a backend behind the snapshot (a leader's snapshot whose install
 *      a crash cut short) gets the database kept for that snapshot installed, and is refused
 *      without one (the entries it lacks are no longer in the WAL);
 *   3. membership, leases (with their key sets, from the keys that name them) and alarms are
 *      loaded from the backend.
 * New member: member and cluster IDs from the initial cluster (as etcd computes them), a WAL
 * whose metadata names them, and raft bootstrapped with the initial members as conf changes.
 *
 * Every piece of I/O and time comes in through BootstrapDeps: production passes the WAL and
 * snapshot directories on disk and the system clock; the simulation passes in-memory ones.
 */
import { MvccStore, valueCacheBytesForQuota } from "../mvcc/kv-store.js";
import type { WatchHubOptions } from "../mvcc/watch-hub.js";
import type { Backend } from "../mvcc/backend/backend.js";
import { Lessor } from "../lease/lessor.js";
import { RawNode, type RaftConfig } from "../raft/raw-node.js";
import { seededRng } from "../raft/rng.js";
import { MemoryStorage } from "../raft/storage.js";
import type { ConfState, Entry, HardState, Snapshot } from "../raft/types.js";
import type { Clock } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import { AlarmStore } from "./alarms.js";
import { CONF_STATE_KEY, decodeConfState } from "./cluster/conf-change.js";
import { computeClusterId, computeMemberId } from "./cluster/member-id.js";
import { Membership, encodeMember, loadMembershipRecords } from "./cluster/membership.js";
import { catchUpV2Store } from "./apply/v2-applier.js";
import type { PeerVersions } from "./cluster/cluster-version.js";
import { Compactor } from "./compactor.js";
import { EtcdServer, electionTicksFor, type EtcdServerOptions } from "./etcd-server.js";
import { LeaseRecords, recoverLeases } from "./lease-records.js";
import { AuthStore, BCRYPT_COST_DEFAULT } from "./auth/auth-store.js";
import { tokenProvider } from "./auth/token-provider.js";
import { MvccStorePort } from "./mvcc-store-port.js";
import type { SnapshotDatabases } from "./snapshot-databases.js";
import { DEFAULT_QUOTA_BYTES } from "./quota.js";
import { RaftNode, type FatalHook, type LogPersistence, type PeerTransport, type ReadyObserver, type SnapshotPersistence } from "./raft-node.js";
import type { PeerActivity } from "./cluster/member-admin.js";
import type { LeaderClient } from "./leader-forward.js";
import { committedOnly, membersInLog, standaloneConfChanges } from "./standalone-restart.js";

/** A WAL the member writes and closes. */
export interface MemberWal extends LogPersistence {
  close(): Promise<void>;
}

/** A WAL directory as bootstrap needs it: tell whether one exists, create it, or open it. */
export interface WalDirectory {
  exists(): boolean;
  /** Creates the WAL with `metadata` (a new member). */
  create(metadata: Uint8Array): Promise<MemberWal>;
  /** Opens the WAL and reads it from the snapshot at `from` (index 0: from the beginning). */
  open(from: { index: number; term: number }): Promise<{ wal: MemberWal; metadata: Uint8Array; hardState: HardState; entries: Entry[] }>;
  /** The snapshot markers the WAL holds (a snapshot without one is not trusted). */
  validSnapshotEntries(): Promise<{ index: number; term: number }[]>;
}

/** The snapshot files as bootstrap needs them (and the driver writes them). */
export interface SnapshotDirectory extends SnapshotPersistence {
  /** The newest snapshot that one of `markers` names. @throws when none is readable */
  loadNewestAvailable(markers: { index: number; term: number }[]): Promise<Snapshot>;
}

export interface BootstrapOptions extends Omit<EtcdServerOptions, "memberId" | "clusterId" | "initialPeers"> {
  /**
   * The checked initial cluster (name → peer URLs): a member without a WAL starts from it; a
   * member with one ignores it, as etcd does.
   */
  initialCluster: Map<string, string[]> | undefined;
  initialClusterToken: string;
  /**
   * Joining a running cluster (--initial-cluster-state existing), as the cluster's member list
   * (fetched from its peers) names this member: raft starts empty and learns the log and the
   * membership from the leader. Undefined: a new member starts a new cluster.
   */
  joinExisting?: { clusterId: bigint; memberId: bigint };
  /**
   * --force-new-cluster: a member restarting from its WAL becomes the only member of its cluster
   * (see standalone-restart.ts); ignored without a WAL, as etcd ignores it.
   */
  forceNewCluster?: boolean;
  preVote: boolean;
  enableLeaseCheckpoint: boolean;
  /** --experimental-enable-lease-checkpoint-persist: applied checkpoints survive a restart. */
  persistLeaseCheckpoints?: boolean;
  /** Interval between checkpoints of one lease; default etcd's 5 minutes. */
  leaseCheckpointIntervalMs?: number;
  /** Skip fsync (--unsafe-no-fsync). */
  unsafeNoFsync: boolean;
  /** See RaftNodeOptions.inlineSyncMaxEntries. */
  inlineSyncMaxEntries?: number;
  autoCompactionMode: "periodic" | "revision";
  /** --auth-token: "simple" (default), "jwt,..." or "" (see auth/token-provider.ts). */
  authToken?: string;
  /** --auth-token-ttl: seconds a simple token lives after its last use (default 300). */
  authTokenTtlSeconds?: number;
  /** --bcrypt-cost (default 10). */
  bcryptCost?: number;
  autoCompactionRetention: string;
  /**
   * Raft's message sizing, fixed in etcd 3.4 (1 MiB per append message, 512 appends in flight to
   * a follower); the simulation shrinks them to make replication go entry by entry.
   */
  raftTuning?: { maxSizePerMsgBytes: number; maxInflightMsgs: number };
  /** Deliberately broken variants, ONLY for proving that the simulation's checks can fail. */
  unsafeTestingKnobs?: {
    raft?: RaftConfig["unsafeTestingKnobs"];
    applyBeforeFsync?: boolean;
    watch?: WatchHubOptions["unsafeTestingKnobs"];
    /** Passed to the member (EtcdServerOptions.unsafeTestingKnobs). */
    followerReadsWithoutReadIndex?: boolean;
  };
}

export interface BootstrapDeps {
  wal: WalDirectory;
  snapshotter: SnapshotDirectory;
  /** The opened backend; the member owns it from here on and closes it when it stops. */
  backend: Backend;
  transport: PeerTransport;
  /** How the leader asks members for their server versions (default: every member is this build). */
  peerVersions?: PeerVersions;
  clock: Clock;
  fatal: FatalHook;
  /** Seeds raft's randomized election timeouts (mixed with the member ID). */
  randomSeed: number;
  logger: Logger;
  /** Watches the driver and the apply path (the simulation's safety checks). */
  observer?: MemberObserver;
  /** The peer connections, for strict reconfiguration checks (absent: all peers count as connected). */
  peerActivity?: PeerActivity;
  /** Forwards leader-only requests (lease keep-alive and time-to-live, promote) from a follower. */
  leaderClient?: LeaderClient;
  /**
   * The databases received with leaders' snapshots, kept until installed durably; a restart
   * whose backend is behind its raft snapshot installs the one kept for it (absent: none are).
   */
  snapshotDatabases?: SnapshotDatabases;
}

/** What the simulation watches of a member; every hook must change nothing. */
export interface MemberObserver extends ReadyObserver {
  /** An entry's effects are in the store, which it left at `revision`. */
  applied?(entry: Entry, revision: number): void;
}

/** A bootstrapped member: the server and what runs beside it. */
export interface Member {
  server: EtcdServer;
  /** Starts raft, the apply path and the member's timers. */
  start(): void;
  /** Stops everything in reverse order and closes the WAL and the backend. Idempotent. */
  stop(): Promise<void>;
}

interface WalMetadata {
  memberId: string;
  clusterId: string;
}

/** Where raft resumes: the recovered log, HardState and configuration. */
interface RecoveredLog {
  memberId: bigint;
  clusterId: bigint;
  wal: MemberWal;
  storage: MemoryStorage;
  applied: number;
  confState: ConfState;
  bootstrapPeers?: { id: bigint; context: Uint8Array }[];
  /** A new cluster's other members (--initial-cluster), for the transport until the membership is applied. */
  initialPeers?: { id: bigint; peerUrls: string[] }[];
  /** The raft snapshot the member restarted from: its index and data (etcd's v2 store JSON, or older etcd-ts `{"clusterVersion":..}`). */
  snapshot?: { index: number; data: Uint8Array };
  /** The WAL's entries after that snapshot that the backend holds already (up to its consistent index). */
  appliedEntries?: Entry[];
}

/** @throws Error when the member has no WAL and no initial cluster, or its disk is unreadable. */
export async function bootstrapMember(options: BootstrapOptions, deps: BootstrapDeps): Promise<Member> {
  const { backend, clock, logger } = deps;
  const quotaBytes = options.quotaBackendBytes > 0 ? options.quotaBackendBytes : DEFAULT_QUOTA_BYTES;
  const mvcc = await MvccStore.open(
    backend,
    { valueCacheBytes: valueCacheBytesForQuota(quotaBytes), watch: { unsafeTestingKnobs: options.unsafeTestingKnobs?.watch } },
    { clock },
  );
  const store = new MvccStorePort(backend, mvcc);
  const log = deps.wal.exists()
    ? await restartLog(deps, store, options.forceNewCluster === true)
    : options.joinExisting
      ? await joinLog(options.joinExisting, deps)
      : await newLog(options, deps);

  const electionTicks = electionTicksFor(options.electionMs, options.heartbeatMs);
  const rawNode = new RawNode(
    {
      id: log.memberId,
      electionTicks,
      heartbeatTicks: 1,
      applied: log.applied,
      maxSizePerMsgBytes: options.raftTuning?.maxSizePerMsgBytes ?? 1024 * 1024,
      maxInflightMsgs: options.raftTuning?.maxInflightMsgs ?? 4096 / 8,
      maxUncommittedEntriesBytes: 1 << 30,
      preVote: options.preVote,
      checkQuorum: true,
      unsafeTestingKnobs: options.unsafeTestingKnobs?.raft,
    },
    { storage: log.storage, rng: seededRng(Number(log.memberId & 0xffffffffn) ^ deps.randomSeed), logger: logger.named("raft") },
  );
  if (log.bootstrapPeers) rawNode.bootstrap(log.bootstrapPeers);

  const membership = new Membership(log.clusterId);
  membership.load(await loadMembershipRecords(store), log.snapshot, store.consistentIndex());
  await membership.writeLoadedImageIndex(store);
  // The v2 store is saved only at membership changes and in raft snapshots: the v2 requests
  // applied since the newer of the two are in the WAL.
  for (const e of log.appliedEntries ?? []) catchUpV2Store(membership, e);
  const alarms = new AlarmStore();
  alarms.load(await store.loadRecords("alarm"));
  const leaseRecords = new LeaseRecords(store);
  const minTtlSeconds = Math.ceil((Math.floor((3 * electionTicks) / 2) * options.heartbeatMs) / 1000);
  const lessor = new Lessor(
    {
      minTtlSeconds,
      enableCheckpoints: options.enableLeaseCheckpoint,
      persistCheckpoints: options.persistLeaseCheckpoints,
      checkpointIntervalMs: options.leaseCheckpointIntervalMs,
    },
    { persistence: leaseRecords, clock, logger: logger.named("lease") },
  );
  await recoverLeases(lessor, store);
  // The member is built below; simple tokens wait on its apply path.
  let member: EtcdServer | undefined;
  const authLogger = logger.named("auth");
  const auth = new AuthStore(
    { bcryptCost: options.bcryptCost ?? BCRYPT_COST_DEFAULT },
    {
      tokens: tokenProvider(options.authToken ?? "simple", options.authTokenTtlSeconds ?? 300, {
        clock,
        logger: authLogger,
        waitApplied: (index) => member?.waitAppliedWithin(index) ?? Promise.resolve(false),
      }),
      logger: authLogger,
    },
  );
  await auth.loadFrom(store);

  const raft = new RaftNode(
    {
      tickMs: options.heartbeatMs,
      unsafeNoFsync: options.unsafeNoFsync,
      inlineSyncMaxEntries: options.inlineSyncMaxEntries,
      unsafeTestingKnobs: { applyBeforeFsync: options.unsafeTestingKnobs?.applyBeforeFsync },
    },
    {
      rawNode,
      storage: log.storage,
      wal: log.wal,
      snapshotter: deps.snapshotter,
      transport: deps.transport,
      clock,
      fatal: deps.fatal,
      logger: logger.named("raft"),
      observer: deps.observer,
    },
  );
  const server = new EtcdServer(
    { ...options, memberId: log.memberId, clusterId: log.clusterId, initialPeers: log.initialPeers },
    {
      raft,
      transport: deps.transport,
      store,
      lessor,
      membership,
      alarms,
      leaseRecords,
      peerVersions: deps.peerVersions,
      clock,
      logger: logger.named("etcdserver"),
      observeApplied: deps.observer?.applied?.bind(deps.observer),
      peerActivity: deps.peerActivity,
      leaderClient: deps.leaderClient,
      auth,
      snapshotDatabases: deps.snapshotDatabases,
    },
    { index: log.applied, confState: log.confState },
  );
  member = server;
  const compactor = new Compactor(
    { mode: options.autoCompactionMode, retention: options.autoCompactionRetention },
    {
      currentRevision: () => mvcc.currentRevision,
      compactRevision: () => mvcc.compactRevision,
      isLeader: () => server.isLeader,
      compact: (revision) => server.compact({ revision: BigInt(revision), physical: false }).then(() => undefined),
      clock,
      logger: logger.named("compactor"),
    },
  );
  let stopping: Promise<void> | undefined;
  return {
    server,
    start: () => {
      server.start();
      compactor.start();
    },
    stop: () => {
      stopping ??= (async () => {
        compactor.stop();
        await server.stop();
        await log.wal.close();
        await store.close();
      })();
      return stopping;
    },
  };
}

/**
 * A backend behind the raft snapshot the WAL resumes from: snapshots are taken of a synced
 * backend, so this one is a leader's whose install a crash cut short (raft persists a received
 * snapshot before the apply path installs its database). As etcd's recoverSnapshotBackend does,
 * the database kept for it is installed now; without one, the entries the backend lacks are
 * no longer in the WAL and the member cannot restart.
 */
async function recoverSnapshotBackend(deps: BootstrapDeps, store: MvccStorePort, snapshot: Snapshot): Promise<void> {
  const { index } = snapshot.metadata;
  const behind = deps.backend.consistentIndex();
  const image = deps.snapshotDatabases?.open(snapshot.metadata);
  if (image !== undefined) {
    deps.logger.warn("the backend is behind the raft snapshot; installing the database received with it", {
      "consistent-index": behind,
      "snapshot-index": index,
    });
    await store.restore(image);
    if (deps.backend.consistentIndex() >= index) {
      await deps.snapshotDatabases!.release(index);
      return;
    }
  }
  throw new Error(
    `the backend's consistent index ${deps.backend.consistentIndex()} is behind the raft snapshot at ${index} ` +
      "(a snapshot from the leader was not installed completely); remove this member's data and add it back",
  );
}

async function restartLog(deps: BootstrapDeps, store: MvccStorePort, forceNewCluster: boolean): Promise<RecoveredLog> {
  const { backend } = deps;
  const markers = await deps.wal.validSnapshotEntries();
  const snapshot = markers.some((m) => m.index > 0) ? await deps.snapshotter.loadNewestAvailable(markers) : undefined;
  const from = snapshot ? { index: snapshot.metadata.index, term: snapshot.metadata.term } : { index: 0, term: 0 };
  const opened = await deps.wal.open(from);
  const meta = JSON.parse(Buffer.from(opened.metadata).toString()) as WalMetadata;
  const memberId = BigInt("0x" + meta.memberId);
  const clusterId = BigInt("0x" + meta.clusterId);
  const storage = new MemoryStorage();
  let applied = 0;
  let confState: ConfState = { voters: [], learners: [] };
  if (snapshot) {
    storage.applySnapshot(snapshot);
    applied = snapshot.metadata.index;
    confState = snapshot.metadata.confState;
  }
  storage.setHardState(opened.hardState);
  let entries = opened.entries;
  let appliedEntries: Entry[] | undefined;
  if (snapshot && backend.consistentIndex() < snapshot.metadata.index) await recoverSnapshotBackend(deps, store, snapshot);
  const consistentIndex = backend.consistentIndex();
  const confRecord = await backend.get("meta", CONF_STATE_KEY);
  const atIndex = entries.find((e) => e.index === consistentIndex);
  if (confRecord !== undefined && consistentIndex > applied && atIndex !== undefined) {
    confState = decodeConfState(confRecord);
    storage.applySnapshot({ metadata: { index: consistentIndex, term: atIndex.term, confState }, data: new Uint8Array(0) });
    // What was applied was committed: a HardState whose commit-only update did not reach the
    // disk (it is written without fsync) may lag the backend, never the other way round.
    if (opened.hardState.commit < consistentIndex) storage.setHardState({ ...opened.hardState, commit: consistentIndex });
    applied = consistentIndex;
    appliedEntries = entries.filter((e) => e.index <= consistentIndex);
    entries = entries.filter((e) => e.index > consistentIndex);
  }
  if (forceNewCluster) {
    const hardState = { ...opened.hardState, commit: Math.max(opened.hardState.commit, applied) };
    const kept = committedOnly(entries, hardState.commit);
    if (kept.length < entries.length) {
      deps.logger.info("discarding uncommitted WAL entries", {
        "entry-index": entries[kept.length]!.index,
        "commit-index-from-wal": hardState.commit,
        "number-of-discarded-entries": entries.length - kept.length,
      });
    }
    const forced = standaloneConfChanges(membersInLog(confState, kept), memberId, hardState.term, hardState.commit);
    entries = [...kept, ...forced];
    if (forced.length > 0) hardState.commit = forced[forced.length - 1]!.index;
    await opened.wal.save(hardState, forced, { sync: true });
    storage.setHardState(hardState);
    storage.append(entries);
    deps.logger.info("forcing restart member", { "cluster-id": clusterId, "local-member-id": memberId, "commit-index": hardState.commit });
    return { memberId, clusterId, wal: opened.wal, storage, applied, confState, snapshot: snapshotOf(snapshot), appliedEntries };
  }
  storage.append(entries);
  deps.logger.info("restarting local member", { "cluster-id": clusterId, "local-member-id": memberId, "commit-index": opened.hardState.commit });
  return { memberId, clusterId, wal: opened.wal, storage, applied, confState, snapshot: snapshotOf(snapshot), appliedEntries };
}

function snapshotOf(snapshot: Snapshot | undefined): RecoveredLog["snapshot"] {
  return snapshot === undefined ? undefined : { index: snapshot.metadata.index, data: snapshot.data };
}

/** A member joining a running cluster: an empty log under the IDs the cluster gave it. */
async function joinLog(join: { clusterId: bigint; memberId: bigint }, deps: BootstrapDeps): Promise<RecoveredLog> {
  const meta: WalMetadata = { memberId: join.memberId.toString(16), clusterId: join.clusterId.toString(16) };
  const wal = await deps.wal.create(Buffer.from(JSON.stringify(meta)));
  deps.logger.info("starting local member", { "local-member-id": join.memberId, "cluster-id": join.clusterId, "initial-cluster-state": "existing" });
  return { ...join, wal, storage: new MemoryStorage(), applied: 0, confState: { voters: [], learners: [] } };
}

async function newLog(options: BootstrapOptions, deps: BootstrapDeps): Promise<RecoveredLog> {
  if (options.initialCluster === undefined) throw new Error("a new member needs its initial cluster");
  const peers = [...options.initialCluster.entries()].map(([name, urls]) => ({
    name,
    urls,
    id: computeMemberId(urls, options.initialClusterToken),
  }));
  const self = peers.find((p) => p.name === options.name);
  if (self === undefined) throw new Error(`couldn't find local name "${options.name}" in the initial cluster configuration`);
  const clusterId = computeClusterId(peers.map((p) => p.id));
  const meta: WalMetadata = { memberId: self.id.toString(16), clusterId: clusterId.toString(16) };
  const wal = await deps.wal.create(Buffer.from(JSON.stringify(meta)));
  deps.logger.info("starting local member", { "local-member-id": self.id, "cluster-id": clusterId });
  return {
    memberId: self.id,
    clusterId,
    wal,
    storage: new MemoryStorage(),
    applied: 0,
    confState: { voters: [], learners: [] },
    bootstrapPeers: peers.map((p) => ({
      id: p.id,
      context: encodeMember({ id: p.id, name: p.name, peerUrls: [...p.urls].sort(), clientUrls: [], isLearner: false }),
    })),
    initialPeers: peers.filter((p) => p.id !== self.id).map((p) => ({ id: p.id, peerUrls: [...p.urls].sort() })),
  };
}
