/**
 * Builds and starts one member from a ServerConfig, bottom layer first, and returns a handle that
 * stops everything in reverse order. The data dir holds, as etcd's does:
 *   <data-dir>/member/wal/      write-ahead log segments (or --wal-dir)
 *   <data-dir>/member/snap/     raft snapshot files
 *   <data-dir>/member/snap/db/  the LevelDB backend (the revisioned store, leases, members)
 */
import { mkdirSync, readFileSync } from "node:fs";
import type tls from "node:tls";
import http from "node:http";
import type net from "node:net";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { MemoryStorage } from "../raft/storage.js";
import { RawNode } from "../raft/raw-node.js";
import { seededRng } from "../raft/rng.js";
import type { ConfState, HardState } from "../raft/types.js";
import { Wal } from "../wal/wal.js";
import { Snapshotter } from "../snap/snapshotter.js";
import { Backend } from "../mvcc/backend/backend.js";
import { MvccStore } from "../mvcc/kv-store.js";
import { Lessor } from "../lease/lessor.js";
import type { Logger } from "../pkg/logger.js";
import { CONF_STATE_KEY, EtcdServer, decodeConfState } from "../server/etcd-server.js";
import { LeaseRecords } from "../server/lease-records.js";
import { Membership, encodeMember } from "../server/membership.js";
import { computeClusterId, computeMemberId } from "../server/member-id.js";
import { MvccStorePort } from "../server/mvcc-store-port.js";
import { RaftNode } from "../server/raft-node.js";
import { Compactor } from "../server/compactor.js";
import { serviceRegistry } from "../api/v3rpc/service-registry.js";
import { httpHandler } from "../api/http/http-handler.js";
import { listenClient } from "../api/listener/client-listener.js";
import { Metrics } from "../api/http/metrics.js";
import { verifyBootstrap, type ServerConfig } from "./config.js";

/**
 * WAL segments are reserved sparsely (ftruncate) by default: Node has no fallocate, and zero-
 * filling 64 MiB per segment (twice at start-up: the first segment and the pipeline's next) puts
 * a burst of writes on the disk that the fsyncs of the first client writes queue behind.
 * ETCD_TS_WAL_PREALLOCATION=zeros selects zero-filling.
 */
const WAL_PREALLOCATION = (process.env["ETCD_TS_WAL_PREALLOCATION"] === "zeros" ? "zeros" : "sparse") as "zeros" | "sparse";

/** etcd's gRPC receive limit is the request limit plus this much framing. */
const GRPC_OVERHEAD_BYTES = 512 * 1024;

export interface RunningMember {
  server: EtcdServer;
  clientListeners: net.Server[];
  stop(): Promise<void>;
}

interface WalMetadata {
  memberId: string;
  clusterId: string;
}

/**
 * TLS for https client URLs, from --cert-file/--key-file; --client-cert-auth with
 * --trusted-ca-file requires and verifies client certificates, as etcd does.
 */
function clientTlsOptions(cfg: ServerConfig): tls.TlsOptions | undefined {
  if (cfg.certFile === "" || cfg.keyFile === "") return undefined;
  const options: tls.TlsOptions = { cert: readFileSync(cfg.certFile), key: readFileSync(cfg.keyFile), minVersion: "TLSv1.2" };
  if (cfg.trustedCaFile !== "") options.ca = readFileSync(cfg.trustedCaFile);
  if (cfg.clientCertAuth) {
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  return options;
}

export async function startMember(cfg: ServerConfig, logger: Logger): Promise<RunningMember> {
  const memberDir = path.join(cfg.dataDir, "member");
  const walDir = cfg.walDir !== "" ? cfg.walDir : path.join(memberDir, "wal");
  const snapDir = path.join(memberDir, "snap");
  // A member without a WAL bootstraps: check its initial cluster before touching the disk.
  const initialCluster = Wal.exists(walDir) ? undefined : verifyBootstrap(cfg);
  mkdirSync(snapDir, { recursive: true, mode: 0o700 });

  // Storage layers first.
  const backend = await Backend.open(path.join(snapDir, "db"));
  const mvcc = await MvccStore.open(backend, {});
  const store = new MvccStorePort(backend, mvcc);

  const storage = new MemoryStorage();
  let wal: Wal;
  let memberId: bigint;
  let clusterId: bigint;
  let applied = 0;
  let confState: ConfState = { voters: [], learners: [] };
  const membershipRecords = await store.loadRecords("members");
  let bootstrapPeers: { id: bigint; context: Uint8Array }[] | undefined;

  const snapshotter = new Snapshotter({ dir: snapDir }, { logger: logger.named("snap") });
  if (initialCluster === undefined) {
    // The newest snapshot the WAL has a marker for; the log is replayed on top of it.
    const markers = await Wal.validSnapshotEntries(walDir);
    const snapshot = markers.some((m) => m.index > 0) ? await snapshotter.loadNewestAvailable(markers) : undefined;
    const from = snapshot ? { index: snapshot.metadata.index, term: snapshot.metadata.term } : { index: 0, term: 0 };
    const opened = await Wal.open(walDir, from, { logger: logger.named("wal"), preallocation: WAL_PREALLOCATION });
    wal = opened.wal;
    const meta = JSON.parse(Buffer.from(opened.metadata).toString()) as WalMetadata;
    memberId = BigInt("0x" + meta.memberId);
    clusterId = BigInt("0x" + meta.clusterId);
    if (snapshot) {
      storage.applySnapshot(snapshot);
      applied = snapshot.metadata.index;
      confState = snapshot.metadata.confState;
    }
    storage.setHardState(opened.hardState as HardState);
    let entries = opened.entries;
    // The backend is applied up to its consistent index, with raft's configuration as of then:
    // raft resumes from there instead of re-applying what the backend already holds.
    const consistentIndex = backend.consistentIndex();
    const confRecord = await backend.get("meta", CONF_STATE_KEY);
    const atIndex = entries.find((e) => e.index === consistentIndex);
    if (confRecord !== undefined && consistentIndex > applied && atIndex !== undefined) {
      confState = decodeConfState(confRecord);
      storage.applySnapshot({ metadata: { index: consistentIndex, term: atIndex.term, confState }, data: new Uint8Array(0) });
      applied = consistentIndex;
      entries = entries.filter((e) => e.index > consistentIndex);
    }
    storage.append(entries);
    logger.info("restarting member", { "member-id": memberId, "cluster-id": clusterId, "commit-index": opened.hardState.commit });
  } else {
    if (cfg.initialClusterState !== "new") {
      throw new Error("--initial-cluster-state=existing needs the peer transport, which this build does not serve yet");
    }
    const peers = [...initialCluster.entries()].map(([name, urls]) => ({
      name,
      urls,
      id: computeMemberId(urls, cfg.initialClusterToken),
    }));
    clusterId = computeClusterId(peers.map((p) => p.id));
    memberId = peers.find((p) => p.name === cfg.name)!.id;
    const meta: WalMetadata = { memberId: memberId.toString(16), clusterId: clusterId.toString(16) };
    wal = await Wal.create(walDir, Buffer.from(JSON.stringify(meta)), { logger: logger.named("wal"), preallocation: WAL_PREALLOCATION });
    bootstrapPeers = peers.map((p) => ({
      id: p.id,
      context: encodeMember({ id: p.id, name: p.name, peerUrls: p.urls, clientUrls: [], isLearner: false }),
    }));
    logger.info("starting a new member", { "member-id": memberId, "cluster-id": clusterId });
  }

  const electionTicks = Math.max(2, Math.round(cfg.electionMs / cfg.heartbeatMs));
  const rawNode = new RawNode(
    {
      id: memberId,
      electionTicks,
      heartbeatTicks: 1,
      applied,
      maxSizePerMsgBytes: 1024 * 1024,
      maxInflightMsgs: 4096 / 8,
      maxUncommittedEntriesBytes: 1 << 30,
      preVote: cfg.preVote,
      checkQuorum: true,
    },
    { storage, rng: seededRng(Number(memberId & 0xffffffffn) ^ Date.now()), logger: logger.named("raft") },
  );
  if (bootstrapPeers) rawNode.bootstrap(bootstrapPeers);

  const membership = new Membership(clusterId);
  membership.load(membershipRecords);
  const leaseRecords = new LeaseRecords(store);
  const minTtlSeconds = Math.ceil((Math.floor((3 * electionTicks) / 2) * cfg.heartbeatMs) / 1000);
  const lessor = new Lessor(
    { minTtlSeconds, enableCheckpoints: cfg.enableLeaseCheckpoint },
    { persistence: leaseRecords, clock: { nowMs: () => Date.now() }, logger: logger.named("lease") },
  );
  await lessor.recover();
  // Keys remember their lease; give the lessor its key sets back.
  mvcc.forEachLeasedKey((key, lease) => {
    if (lessor.lookup(lease) !== undefined) lessor.attach(lease, [key]);
  });

  const server = new EtcdServer(
    {
      memberId,
      clusterId,
      name: cfg.name,
      clientUrls: cfg.advertiseClientUrls,
      maxRequestBytes: cfg.maxRequestBytes,
      maxTxnOps: cfg.maxTxnOps,
      electionMs: cfg.electionMs,
      heartbeatMs: cfg.heartbeatMs,
      quotaBackendBytes: cfg.quotaBackendBytes,
      requestTimeoutMs: 5000 + 2 * cfg.electionMs,
      snapshotCount: cfg.snapshotCount,
      maxSnapshots: cfg.maxSnapshots,
    },
    { store, lessor, membership, leaseRecords, logger: logger.named("etcdserver") },
  );
  const raft = new RaftNode(
    { tickMs: cfg.heartbeatMs, unsafeNoFsync: cfg.unsafeNoFsync },
    {
      rawNode,
      storage,
      wal,
      snapshotter,
      transport: { send: () => undefined },
      apply: (batch) => server.applyBatch(batch),
      onReadStates: (states) => server.onReadStates(states),
      onSoftState: (state) => server.onSoftState(state),
      afterAdvance: () => server.afterAdvance(),
      logger: logger.named("raft"),
    },
  );
  server.attachRaft(raft, applied, confState);
  server.loadAlarms(await store.loadRecords("alarm"));
  const compactor = new Compactor(
    { mode: cfg.autoCompactionMode, retention: cfg.autoCompactionRetention },
    {
      currentRevision: () => mvcc.currentRevision,
      compactRevision: () => mvcc.compactRevision,
      isLeader: () => server.isLeader,
      compact: (revision) => server.compact({ revision: BigInt(revision), physical: false }).then(() => undefined),
      logger: logger.named("compactor"),
    },
  );

  // Client API.
  const metrics = new Metrics(server);
  const grpcServer = new grpc.Server({
    "grpc.max_receive_message_length": cfg.maxRequestBytes + GRPC_OVERHEAD_BYTES,
    "grpc.max_send_message_length": 2 ** 31 - 1,
    "grpc.max_concurrent_streams": Math.min(cfg.maxConcurrentStreams, 2 ** 31 - 1),
    "grpc.keepalive_time_ms": cfg.grpcKeepaliveIntervalMs || 2 * 3600 * 1000,
    "grpc.keepalive_timeout_ms": cfg.grpcKeepaliveTimeoutMs || 20_000,
    // channelz bookkeeping costs every call and nothing here reads it.
    "grpc.enable_channelz": 0,
  });
  const apiLogger = logger.named("api");
  const services = serviceRegistry(server, { maxTxnOps: cfg.maxTxnOps, watchProgressNotifyIntervalMs: cfg.watchProgressNotifyIntervalMs }, apiLogger);
  for (const s of services) grpcServer.addService(s.definition, s.implementation);
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const http1 = http.createServer(httpHandler(server, metrics, services));

  // The peer port is bound as etcd binds it, so a clash is found at start-up.
  const peerListeners: net.Server[] = [];
  for (const u of cfg.listenPeerUrls) {
    const url = new URL(u);
    const peer = http.createServer((_req, res) => {
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((resolve, reject) => {
      peer.once("error", reject);
      peer.listen({ host: url.hostname === "localhost" ? "127.0.0.1" : url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || 2380) }, () => resolve());
    });
    peerListeners.push(peer);
  }
  server.start();
  compactor.start();
  // As etcd, serve clients once the member has published itself (it has a leader and the log
  // commits).
  await server.ready;
  const clientListeners: net.Server[] = [];
  const clientTls = clientTlsOptions(cfg);
  for (const u of cfg.listenClientUrls) {
    const url = new URL(u);
    const secure = url.protocol === "https:" || url.protocol === "unixs:";
    if (secure && clientTls === undefined) {
      throw new Error(`TLS key/cert (--cert-file, --key-file) must be provided for client url ${u} with HTTPS scheme`);
    }
    clientListeners.push(await listenClient({ url, tls: secure ? clientTls : undefined, h2: { settings: { maxConcurrentStreams: Math.min(cfg.maxConcurrentStreams, 2 ** 31 - 1) } } }, { injectGrpc: (c) => injector.injectConnection(c), http1, logger: apiLogger }));
    logger.info("serving client traffic", { address: u });
  }
  logger.info("ready to serve client requests", { name: cfg.name });

  let stopping: Promise<void> | undefined;
  return {
    server,
    clientListeners,
    stop: () => {
      stopping ??= (async () => {
        for (const l of [...clientListeners, ...peerListeners]) l.close();
        injector.drain(1000);
        compactor.stop();
        await server.stop();
        grpcServer.forceShutdown();
        await wal.close();
        await store.close();
      })();
      return stopping;
    },
  };
}
