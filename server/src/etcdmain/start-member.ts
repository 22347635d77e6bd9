/**
 * Builds and starts one member from a ServerConfig, bottom layer first, and returns a handle that
 * stops everything in reverse order. The data dir holds, as etcd's does:
 *   <data-dir>/member/wal/      write-ahead log segments (or --wal-dir)
 *   <data-dir>/member/snap/     raft snapshot files
 *   <data-dir>/member/snap/db/  the LevelDB backend (the revisioned store, leases, members)
 */
import { BackendCorruptError, verifyLevelDbFiles } from "../mvcc/backend/leveldb-verify.js";
import { mkdirSync, readFileSync } from "node:fs";
import tls from "node:tls";
import http2 from "node:http2";
import http from "node:http";
import https from "node:https";
import type net from "node:net";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { FsWalDir } from "../wal/wal-dir.js";
import { Snapshotter } from "../snap/snapshotter.js";
import { Backend, type BackendOptions } from "../mvcc/backend/backend.js";
import { systemClock } from "../pkg/clock.js";
import { HeldListener } from "../pkg/held-listener.js";
import { cipherOptions } from "../pkg/cipher-suites.js";
import type { Logger } from "../pkg/logger.js";
import type { EtcdServer } from "../server/etcd-server.js";
import { HttpPeerVersions } from "../server/cluster/cluster-version.js";
import { bootstrapMember } from "../server/bootstrap.js";
import { serviceRegistry } from "../api/v3rpc/service-registry.js";
import { httpHandler, metricsHandler } from "../api/http/http-handler.js";
import { GrpcMetrics } from "../api/v3rpc/grpc-metrics.js";
import { LeanUnaryServer } from "../api/v3rpc/lean-unary.js";
import { LeanStreamServer } from "../api/v3rpc/lean-stream.js";
import { guardGrpcStreams } from "../api/v3rpc/grpc-stream-guard.js";
import { routeNonGrpcStreams } from "../api/v3rpc/non-grpc-streams.js";
import { installLeanPath, type LeanTaker } from "../api/v3rpc/lean-path.js";
import { carryBridgedPeers, OwnH2Server } from "../api/v3rpc/own-h2-server.js";
import { NodeH2PingPolice } from "../api/v3rpc/node-h2-pings.js";
import { WalCells } from "../api/http/metrics.js";
import { v2Handler } from "../api/v2http/v2-handler.js";
import { clientConnectionServer } from "../api/listener/client-listener.js";
import { Metrics } from "../api/http/metrics.js";
import type { ServerConfig } from "./config.js";
import { applyAutoTls } from "./auto-tls.js";
import { planStart } from "./cluster-bootstrap.js";
import { PeerHttpClient } from "../rafthttp/peer-http-client.js";
import { checkClientSan, clientTlsOptions as peerTlsClientOptions, refuseDisallowed, serverTlsOptions, subjectAltNames, validateTlsInfo, type TlsInfo } from "../pkg/tls-info.js";
import { PeerClient } from "../rafthttp/peer-client.js";
import { sendSnapshot } from "../rafthttp/snapshot-sender.js";
import { createSnapshotHandler, SnapshotDbCounters } from "../rafthttp/snapshot-handler.js";
import { etcdSnapshotDatabase } from "../server/etcd-database-image.js";
import { peerRequestHandler } from "../rafthttp/peer-server.js";
import { Transport } from "../rafthttp/transport.js";
import { RemovedFromClusterError } from "../rafthttp/peer-protocol.js";
import { peerServices } from "./peer-services.js";
import { PeerLeaderClient } from "./leader-client.js";
import { HttpPeerHashClient } from "./peer-hash-client.js";
import { answerPeerHashKV, CorruptionChecker } from "../server/corrupt-check.js";
import { SnapshotDatabaseFiles } from "../server/snapshot-databases.js";
import { AlarmRequest_AlarmAction, AlarmType } from "@etcd-ts/proto/etcdserverpb/rpc";

/** The largest v2 request body read (Go's form limit, 10 MB). */
const V2_BODY_BYTES_MAX = 10 << 20;

/** grpc-go's policy on clients' pings when etcd sets none (--grpc-keepalive-min-time 0). */
const GRPC_PING_MIN_TIME_DEFAULT_MS = 5 * 60_000;

/**
 * ETCD_TS_UNSAFE_FOLLOWER_READS=1 breaks the member ON PURPOSE, for tests only: a follower serves
 * linearizable reads from its own state without ReadIndex (stale reads), so that the cluster
 * fault suite can show that its checks catch a violation. Never set it otherwise.
 */
const UNSAFE_FOLLOWER_READS = process.env["ETCD_TS_UNSAFE_FOLLOWER_READS"] === "1";
/**
 * ETCD_TS_LEASE_CHECKPOINT_INTERVAL_MS shortens the interval between checkpoints of one lease
 * (etcd's fixed 5 minutes; etcd 3.4 has no flag for it), so tests of checkpoints across leader
 * changes run in seconds.
 */
const LEASE_CHECKPOINT_INTERVAL_MS = positiveIntEnv("ETCD_TS_LEASE_CHECKPOINT_INTERVAL_MS");
/**
 * WAL segments are reserved sparsely (ftruncate) by default: Node has no fallocate, and zero-
 * filling 64 MiB per segment (twice at start-up: the first segment and the pipeline's next) puts
 * a burst of writes on the disk that the fsyncs of the first client writes queue behind.
 * ETCD_TS_WAL_PREALLOCATION=zeros selects zero-filling.
 */
const WAL_PREALLOCATION = (process.env["ETCD_TS_WAL_PREALLOCATION"] === "zeros" ? "zeros" : "sparse") as "zeros" | "sparse";

/**
 * ETCD_TS_WAL_INLINE_MAX_ENTRIES: a Ready with at most this many entries has its synced WAL write
 * made on the event loop's thread (see RaftNodeOptions.inlineSyncMaxEntries); default 1, -1 off.
 */
const WAL_INLINE_MAX_ENTRIES = intEnv("ETCD_TS_WAL_INLINE_MAX_ENTRIES");

function intEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const v = Number(raw);
  return Number.isInteger(v) ? v : undefined;
}

function positiveIntEnv(name: string): number | undefined {
  const v = intEnv(name);
  return v !== undefined && v > 0 ? v : undefined;
}

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
  const options: tls.TlsOptions = { cert: readFileSync(cfg.certFile), key: readFileSync(cfg.keyFile), minVersion: "TLSv1.2", ...cipherOptions(cfg.cipherSuites) };
  if (cfg.trustedCaFile !== "") options.ca = readFileSync(cfg.trustedCaFile);
  if (cfg.clientCrlFile !== "") options.crl = readFileSync(cfg.clientCrlFile);
  // As etcd's TLSInfo.ServerConfig: a trusted CA alone already requires a client certificate
  // it signed (--client-cert-auth adds the certificate's CN as the user).
  if (cfg.clientCertAuth || cfg.trustedCaFile !== "") {
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  return options;
}

/**
 * Peer TLS as etcd's: the peer certificate and key, the trusted CA, the revocation list; with
 * --peer-client-cert-auth the listener requires client certificates the CA signed, and
 * --peer-cert-allowed-cn / --peer-cert-allowed-hostname narrow which ones (on both sides of a
 * peer connection). Files are read once.
 */
function readPeerTls(cfg: ServerConfig): TlsInfo {
  const read = (f: string): Buffer | undefined => (f === "" ? undefined : readFileSync(f));
  const info: TlsInfo = {
    cert: read(cfg.peerCertFile),
    key: read(cfg.peerKeyFile),
    ca: read(cfg.peerTrustedCaFile),
    crl: read(cfg.peerCrlFile),
    clientCertAuth: cfg.peerClientCertAuth,
    allowedCn: cfg.peerCertAllowedCn,
    allowedHostname: cfg.peerCertAllowedHostname,
    cipherOptions: cipherOptions(cfg.cipherSuites),
    skipClientSanVerify: cfg.peerSkipClientSanVerification,
  };
  validateTlsInfo(info);
  return info;
}

/**
 * Opens the member's backend after verifying every checksum in its files (leveldb-verify.ts); a
 * damaged backend is refused, never served. The check reads the whole database once (~250 MB/s);
 * ETCD_TS_BACKEND_VERIFY=off skips it (for very large backends whose start-up time matters more).
 * @throws BackendCorruptError (a checksum fails, or LevelDB reports corruption when it opens)
 */
async function openVerifiedBackend(dir: string, logger: Logger, options: BackendOptions): Promise<Backend> {
  if (process.env["ETCD_TS_BACKEND_VERIFY"] === "off") {
    logger.warn("backend checksum verification is off (ETCD_TS_BACKEND_VERIFY=off)", { "db-dir": dir });
    return Backend.open(dir, options);
  }
  const startedMs = Date.now();
  const report = verifyLevelDbFiles(dir);
  logger.info("verified the backend's checksums", { "db-dir": dir, tables: report.tables, blocks: report.blocks, "log-records": report.logRecords, "took-ms": Date.now() - startedMs });
  for (const t of report.tornTails) logger.warn("backend log has a torn tail (an unsynced write cut short); the WAL replays it", t);
  try {
    return await Backend.open(dir, options);
  } catch (e) {
    const message = e instanceof Error ? `${e.message} ${String((e as { cause?: unknown }).cause ?? "")}` : String(e);
    if (/corrupt/i.test(message)) throw new BackendCorruptError(dir, 0, `LevelDB refused to open it: ${message.trim()}`);
    throw e;
  }
}

/** etcd's "rejected connection" line for a TLS connection it refused. */
function logRejected(logger: Logger, socket: tls.TLSSocket, err: Error): void {
  const cert = socket.getPeerCertificate?.();
  const fields: Record<string, unknown> = { "remote-addr": `${socket.remoteAddress}:${socket.remotePort}`, "server-name": (socket as tls.TLSSocket & { servername?: string | false }).servername || "" };
  if (cert !== undefined && cert !== null && Object.keys(cert).length > 0) {
    const { ips, dns } = subjectAltNames(cert);
    fields["ip-addresses"] = ips;
    fields["dns-names"] = dns;
  }
  fields.error = err.message;
  logger.warn("rejected connection", fields);
}

/**
 * A peer's TLS connection passes etcd's checks on its client certificate: the CN or host-name rule
 * (--peer-cert-allowed-cn/-hostname) and, unless --experimental-peer-skip-client-san-verification,
 * checkSAN. A refused connection is logged and destroyed.
 */
async function admitPeer(socket: tls.TLSSocket, info: TlsInfo, logger: Logger): Promise<boolean> {
  // Nothing is read until the checks are done.
  socket.pause();
  if (!refuseDisallowed(info, socket)) return false;
  if (info.skipClientSanVerify) return true;
  const cert = socket.getPeerCertificate();
  if (cert === null || Object.keys(cert).length === 0 || socket.remoteAddress === undefined) return true;
  const refusal = await checkClientSan(cert, socket.remoteAddress);
  if (refusal === undefined) return !socket.destroyed;
  logRejected(logger, socket, refusal);
  socket.destroy();
  return false;
}

/** The peer and client listeners, bound before the member boots (etcd's configurePeerListeners and configureClientListeners). */
interface BoundListeners {
  peer: Array<{ url: URL; held: HeldListener }>;
  client: Array<{ url: URL; secure: boolean; held: HeldListener }>;
  close(): void;
}

function hostPort(url: URL, defaultPort: number): { host: string; port: number } {
  return { host: url.hostname, port: Number(url.port || defaultPort) };
}

/**
 * Binds every peer and client URL, as etcd does before it touches the data dir: a busy or
 * forbidden port fails the start first, and connections that come while the member boots wait
 * (HeldListener) instead of being refused.
 */
async function bindListeners(cfg: ServerConfig, peerTls: TlsInfo, clientTls: tls.TlsOptions | undefined, logger: Logger): Promise<BoundListeners> {
  const bound: BoundListeners = {
    peer: [],
    client: [],
    close() {
      for (const l of [...this.peer, ...this.client]) l.held.server.close();
    },
  };
  try {
    for (const u of cfg.listenPeerUrls) {
      const url = new URL(u);
      if (url.protocol === "https:" && (peerTls.cert === undefined || peerTls.key === undefined)) {
        throw new Error(`cannot listen on TLS for ${url.host}: KeyFile and CertFile are not presented`);
      }
      const { host, port } = hostPort(url, 2380);
      bound.peer.push({ url, held: await HeldListener.bind(host, port, (err) => logger.error("peer listener error", { error: String(err) })) });
    }
    for (const u of cfg.listenClientUrls) {
      const url = new URL(u);
      const secure = url.protocol === "https:" || url.protocol === "unixs:";
      if (secure && clientTls === undefined) {
        throw new Error(`TLS key/cert (--cert-file, --key-file) must be provided for client url ${u} with HTTPS scheme`);
      }
      const { host, port } = hostPort(url, url.protocol === "https:" ? 443 : 80);
      bound.client.push({ url, secure, held: await HeldListener.bind(host, port, (err) => logger.error("client listener error", { error: String(err) })) });
    }
  } catch (err) {
    bound.close();
    throw err;
  }
  return bound;
}

export async function startMember(cfg: ServerConfig, logger: Logger): Promise<RunningMember> {
  // Self-signed pairs for --auto-tls/--peer-auto-tls fill the cert/key paths.
  cfg = applyAutoTls(cfg, logger).cfg;
  const peerTls = readPeerTls(cfg);
  const clientTls = clientTlsOptions(cfg);
  const listeners = await bindListeners(cfg, peerTls, clientTls, logger);
  try {
    return await startBoundMember(cfg, logger, listeners, peerTls, clientTls);
  } catch (err) {
    listeners.close();
    throw err;
  }
}

async function startBoundMember(cfg: ServerConfig, logger: Logger, listeners: BoundListeners, peerTls: TlsInfo, clientTls: tls.TlsOptions | undefined): Promise<RunningMember> {
  const memberDir = path.join(cfg.dataDir, "member");
  const walDir = cfg.walDir !== "" ? cfg.walDir : path.join(memberDir, "wal");
  const snapDir = path.join(memberDir, "snap");
  // How the member finds its cluster: restart from its WAL, start a new cluster, or join a running one.
  const startPlan = await planStart(cfg, walDir, { logger });
  mkdirSync(snapDir, { recursive: true, mode: 0o700 });

  // The peer transport: built before the member (its PeerTransport), started once the member
  // exists, stopped before the member's storage closes.
  const peerClient = new PeerHttpClient({ tls: peerTls });
  const peerTlsRequestOptions = peerTlsClientOptions(peerTls);
  const rafthttpLogger = logger.named("rafthttp");
  // The member's IDs are known once it is bootstrapped; snapshots are sent only after that.
  let identity: { localId: bigint; clusterId: bigint } | undefined;
  const transport = new Transport(
    { peerUrls: cfg.initialAdvertisePeerUrls },
    {
      client: peerClient,
      snapshotSender: async (target, merged) => {
        if (identity === undefined) throw new Error("the member is not bootstrapped yet");
        const r = await sendSnapshot(
          merged,
          target.url,
          { ...identity, peerUrls: cfg.initialAdvertisePeerUrls, snapDir, tls: peerTlsRequestOptions },
          { database: etcdSnapshotDatabase, logger: rafthttpLogger },
        );
        if (!r.ok) throw r.failure === "MemberRemoved" ? new RemovedFromClusterError() : new Error(`${r.failure}: ${r.error}`);
      },
      clock: systemClock,
      logger: rafthttpLogger,
    },
  );
  const leaderClient = new PeerLeaderClient(
    new PeerClient({ timeoutMs: 5000 + 2 * cfg.electionMs }, { client: new PeerHttpClient({ tls: peerTls }) }),
    new PeerHttpClient({ tls: peerTls }),
  );

  // Tracing: the SDK is loaded only when the flag is on.
  const tracing = cfg.tracing === undefined ? undefined : (await import("../api/v3rpc/rpc-tracing.js")).startRpcTracing(cfg.tracing, { logger: logger.named("tracing") });

  // The metrics' cells the WAL and snapshot files count into from the start.
  const walCells = new WalCells();
  const snapshotter = new Snapshotter({ dir: snapDir }, { logger: logger.named("snap") });
  const member = await bootstrapMember(
    {
      name: cfg.name,
      clientUrls: cfg.advertiseClientUrls,
      maxRequestBytes: cfg.maxRequestBytes,
      maxTxnOps: cfg.maxTxnOps,
      electionMs: cfg.electionMs,
      heartbeatMs: cfg.heartbeatMs,
      initialElectionTickAdvance: cfg.initialElectionTickAdvance,
      quotaBackendBytes: cfg.quotaBackendBytes,
      requestTimeoutMs: 5000 + 2 * cfg.electionMs,
      snapshotCount: cfg.snapshotCount,
      maxSnapshots: cfg.maxSnapshots,
      initialCluster: startPlan.initialCluster,
      joinExisting: startPlan.joinExisting,
      forceNewCluster: cfg.forceNewCluster,
      initialClusterToken: startPlan.initialClusterToken ?? cfg.initialClusterToken,
      preVote: cfg.preVote,
      enableLeaseCheckpoint: cfg.enableLeaseCheckpoint,
      persistLeaseCheckpoints: cfg.enableLeaseCheckpointPersist,
      leaseCheckpointIntervalMs: LEASE_CHECKPOINT_INTERVAL_MS,
      unsafeNoFsync: cfg.unsafeNoFsync,
      inlineSyncMaxEntries: WAL_INLINE_MAX_ENTRIES,
      autoCompactionMode: cfg.autoCompactionMode,
      autoCompactionRetention: cfg.autoCompactionRetention,
      strictReconfigCheck: cfg.strictReconfigCheck,
      authToken: cfg.authToken,
      authTokenTtlSeconds: cfg.authTokenTtlSeconds,
      bcryptCost: cfg.bcryptCost,
      clientCertAuth: cfg.clientCertAuth,
      ...(UNSAFE_FOLLOWER_READS ? { unsafeTestingKnobs: { followerReadsWithoutReadIndex: true } } : {}),
    },
    {
      wal: new FsWalDir({ dir: walDir, wal: { logger: logger.named("wal"), preallocation: WAL_PREALLOCATION, observer: walCells } }),
      snapshotter,
      backend: await openVerifiedBackend(path.join(snapDir, "db"), logger, {
        // etcd's defaults stand for 0 (an unset flag).
        ...(cfg.backendBatchIntervalMs > 0 ? { batchIntervalMs: cfg.backendBatchIntervalMs } : {}),
        ...(cfg.backendBatchLimit > 0 ? { batchLimit: cfg.backendBatchLimit } : {}),
      }),
      transport,
      peerVersions: new HttpPeerVersions({ timeoutMs: 5000 }),
      peerActivity: { activeSince: (id) => transport.activeSince(id) || undefined },
      leaderClient,
      snapshotDatabases: await SnapshotDatabaseFiles.open(snapDir),
      clock: systemClock,
      fatal: (message, fields) => {
        logger.error(`${message}; exiting`, fields);
        process.exit(1);
      },
      randomSeed: Date.now(),
      logger,
      ...(tracing !== undefined ? { observer: tracing.observer } : {}),
    },
  );
  const server = member.server;
  identity = { localId: server.memberId, clusterId: server.clusterId };

  // Corruption checks against the peers' HashKV (etcd 3.4's corrupt.go): before a restarted
  // member starts, and periodically on the leader.
  const corruption = new CorruptionChecker(
    { memberId: server.memberId, checkIntervalMs: cfg.corruptCheckTimeMs, requestTimeoutMs: 5000 + 2 * cfg.electionMs },
    {
      hashKV: (revision) => server.store.hashKV(revision),
      members: () => server.membership.list(),
      isLeader: () => server.isLeader,
      linearizableReadNotify: () => server.linearizableReadNotify(),
      raiseCorrupt: async () => {
        await server.alarm({ action: AlarmRequest_AlarmAction.ACTIVATE, memberID: 0n, alarm: AlarmType.CORRUPT });
      },
      client: new HttpPeerHashClient(new PeerHttpClient({ tls: peerTls })),
      clock: systemClock,
      logger: logger.named("corrupt"),
    },
  );
  if (cfg.initialCorruptCheck && startPlan.initialCluster === undefined && startPlan.joinExisting === undefined) {
    try {
      await corruption.initialCheck();
    } catch (err) {
      await member.stop();
      throw err;
    }
  }
  transport.start({ memberId: server.memberId, clusterId: server.clusterId, handler: server });

  // Client API.
  // --metrics extensive adds the gRPC handling-time histogram, as etcd's.
  const grpcMetrics = new GrpcMetrics({ extensive: cfg.metrics === "extensive" });
  const snapshotDb = new SnapshotDbCounters();
  const metrics = new Metrics({ server, grpc: grpcMetrics, peers: transport, wal: walCells, snapshotter, snapshotDb });
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
  const services = serviceRegistry(
    server,
    { maxTxnOps: cfg.maxTxnOps, watchProgressNotifyIntervalMs: cfg.watchProgressNotifyIntervalMs, metrics: grpcMetrics, wrapService: tracing?.wrapService },
    apiLogger,
  );
  for (const s of services) grpcServer.addService(s.definition, s.implementation);
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  // The HTTP side of the client port: HTTP/1 connections, and HTTP/2 requests that are not gRPC
  // (non-grpc-streams.ts), on a server of their own per kind of connection (a request bridged
  // from a TLS connection no longer sees its TLS socket; the access controller must know).
  const v2 = cfg.enableV2 ? v2Handler(server, { name: cfg.name, bodyBytesMax: V2_BODY_BYTES_MAX }) : undefined;
  const access = { cors: cfg.cors, hostWhitelist: cfg.hostWhitelist };
  const http1 = http.createServer(httpHandler(server, metrics, services, access, apiLogger, v2));
  const httpOverH2 = {
    plain: http2.createServer(httpHandler(server, metrics, services, access, apiLogger, v2) as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void),
    tls: http2.createServer(httpHandler(server, metrics, services, { ...access, tls: true }, apiLogger, v2) as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void),
  };
  for (const h of [httpOverH2.plain, httpOverH2.tls]) h.on("sessionError", () => undefined);
  // The hot unary methods (lean-unary.ts) and the LeaseKeepAlive and Watch streams (lean-stream.ts) skip
  // grpc-js's per-call machinery. ETCD_TS_LEAN_UNARY=off leaves every call to grpc-js,
  // ETCD_TS_LEAN_STREAM=off only the streams (measurements, bisecting).
  const leanTakers: LeanTaker[] = [];
  if (process.env.ETCD_TS_LEAN_UNARY !== "off") {
    const limits = { maxReceiveMessageBytes: cfg.maxRequestBytes + GRPC_OVERHEAD_BYTES, maxSendMessageBytes: 2 ** 31 - 1 };
    const lean = new LeanUnaryServer(limits, { services });
    const leanStreams = process.env.ETCD_TS_LEAN_STREAM === "off" ? undefined : new LeanStreamServer(limits, { services });
    const takers = leanStreams === undefined ? [lean] : [lean, leanStreams];
    const installed = installLeanPath(grpcServer, takers);
    if (installed.installed) leanTakers.push(...takers);
    if (installed.installed) apiLogger.debug("lean unary path on", { methods: lean.paths.length, streams: leanStreams?.paths.length ?? 0 });
    else apiLogger.warn("lean unary path off", { reason: installed.reason });
  }
  if (!routeNonGrpcStreams(grpcServer, (stream, headers, flags, rawHeaders) => {
    const secure = (stream.session?.socket as tls.TLSSocket | undefined)?.encrypted === true;
    (secure ? httpOverH2.tls : httpOverH2.plain).emit("stream", stream, headers, flags, rawHeaders);
  })) {
    apiLogger.warn("HTTP/2 requests that are not gRPC go to grpc-js: its internals are not as expected", {});
  }
  // A stream reset before grpc-js sees it must not end the process (grpc-stream-guard.ts); the guard
  // wraps the lean hook too, so it covers the lean takers on node:http2 as well.
  if (!guardGrpcStreams(grpcServer, { handlerThrew: (err) => apiLogger.warn("gRPC stream handler failed", { error: String(err) }) })) {
    apiLogger.warn("gRPC stream guard off: grpc-js's internals are not as expected", {});
  }
  // The client port's HTTP/2 connections run on pkg/h2 (own-h2-server.ts): the lean takers
  // first, every other stream bridged to grpc-js. ETCD_TS_H2=node leaves every connection to
  // node:http2 (measurements, bisecting), as do the lean paths being off.
  // --grpc-keepalive-min-time (0: grpc-go's default, as etcd passes it on).
  const pingMinTimeMs = cfg.grpcKeepaliveMinTimeMs > 0 ? cfg.grpcKeepaliveMinTimeMs : GRPC_PING_MIN_TIME_DEFAULT_MS;
  const ownH2 =
    process.env.ETCD_TS_H2 !== "node" && leanTakers.length > 0
      ? new OwnH2Server(
          { maxConcurrentStreams: Math.min(cfg.maxConcurrentStreams, 2 ** 31 - 1), keepaliveTimeMs: cfg.grpcKeepaliveIntervalMs || 2 * 3600 * 1000, keepaliveTimeoutMs: cfg.grpcKeepaliveTimeoutMs || 20_000, pingMinTimeMs },
          { takers: leanTakers, connectGrpc: (c) => injector.injectConnection(c), connectHttp: (c, secure) => (secure ? httpOverH2.tls : httpOverH2.plain).emit("connection", c), logger: apiLogger },
        )
      : undefined;
  // the bridges' socket lives in the member directory (0700) when its path fits a Unix socket's
  // (a stale one is replaced at start), else in a temporary directory of its own
  const bridgeSocket = path.join(memberDir, "h2-bridge.sock");
  if (ownH2 !== undefined && !(await ownH2.start(Buffer.byteLength(bridgeSocket) < 100 ? bridgeSocket : undefined)) && !carryBridgedPeers(grpcServer)) {
    apiLogger.warn("bridged gRPC calls will not see client addresses", {});
  }

  // The peer port: etcd's peer protocol (raft messages, streams, snapshots, members, leases).
  const receiveSnapshot = createSnapshotHandler(
    { ...identity, peerUrls: cfg.initialAdvertisePeerUrls, snapDir },
    { member: server, database: etcdSnapshotDatabase, logger: rafthttpLogger, addRemote: (id, urls) => transport.addRemote(id, urls), counters: snapshotDb },
  );
  const peerHandler = peerRequestHandler(
    {},
    { services: { ...peerServices(server), hashKV: (revision) => answerPeerHashKV((r) => server.store.hashKV(r), revision) }, handler: server, streams: transport, snapshotHandler: (req, res) => void receiveSnapshot(req, res), logger: rafthttpLogger },
  );
  // As etcd, the member starts (and hands its peers to the transport) before the peer port
  // serves: a peer's stream request then finds this member knowing it, instead of a 404 that
  // costs the peer a redial (a joining member's streams are up as soon as it is ready).
  member.start();
  const peerServers: http.Server[] = [];
  for (const { url, held } of listeners.peer) {
    const peer = http.createServer(peerHandler);
    peer.requestTimeout = 0;
    peer.keepAliveTimeout = 0;
    if (url.protocol === "https:") {
      // TLS first, then etcd's checks on the client certificate (the CN or host-name rule, and
      // checkSAN, which resolves names), and only then HTTP: a refused connection never reaches
      // the peer handler.
      const secure = tls.createServer({ ...serverTlsOptions(peerTls), ALPNProtocols: ["http/1.1"] });
      secure.on("secureConnection", (socket: tls.TLSSocket) => {
        void admitPeer(socket, peerTls, rafthttpLogger).then((ok) => {
          if (!ok) return;
          peer.emit("connection", socket);
          socket.resume();
        });
      });
      secure.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => logRejected(rafthttpLogger, socket, err));
      held.serve(secure);
    } else {
      held.serve(peer);
    }
    peerServers.push(peer);
  }
  // --listen-metrics-urls: /metrics and /health on listeners of their own (https with the
  // client TLS files). As etcd, they serve from here on, before the member is ready (/health
  // answers false until there is a leader): a liveness probe sees a booting member answer.
  const metricsListeners: net.Server[] = [];
  for (const u of cfg.listenMetricsUrls) {
    const url = new URL(u);
    const handler = metricsHandler(server, metrics);
    let ml: http.Server;
    if (url.protocol === "https:") {
      if (clientTls === undefined) throw new Error(`TLS key/cert (--cert-file, --key-file) must be provided for metrics url ${u} with HTTPS scheme`);
      ml = https.createServer(clientTls, handler);
    } else {
      ml = http.createServer(handler);
    }
    await new Promise<void>((resolve, reject) => {
      ml.once("error", reject);
      ml.listen({ host: url.hostname === "localhost" ? "127.0.0.1" : url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || 80) }, () => resolve());
    });
    metricsListeners.push(ml);
    logger.info("serving metrics", { address: u });
  }
  corruption.start();
  // As etcd, serve clients once the member has published itself (it has a leader and the log
  // commits); until then their connections wait in the held listeners.
  await server.ready;
  // Connections node:http2 serves for grpc-js get pkg/h2's ping policy too (node-h2-pings.ts).
  const pingPolice = NodeH2PingPolice.install(grpcServer, { minTimeMs: pingMinTimeMs, permitWithoutStream: false });
  if (pingPolice === undefined) apiLogger.warn("client pings are not policed on node:http2 connections", {});
  for (const { url, secure, held } of listeners.client) {
    const h2 = { settings: { maxConcurrentStreams: Math.min(cfg.maxConcurrentStreams, 2 ** 31 - 1) } };
    // --client-cert-allowed-hostname: a verified client certificate must be valid for that name.
    const allowedHostname = cfg.clientCertAllowedHostname;
    const admit = allowedHostname === "" ? undefined : (socket: tls.TLSSocket) => refuseDisallowed({ clientCertAuth: cfg.clientCertAuth || cfg.trustedCaFile !== "", allowedHostname }, socket);
    held.serve(clientConnectionServer({ tls: secure ? clientTls : undefined, h2, admit }, { injectGrpc: (c, socket) => {
      grpcMetrics.trackConnection(socket);
      if (pingPolice !== undefined) pingPolice.inject(() => injector.injectConnection(c));
      else injector.injectConnection(c);
    }, http1, logger: apiLogger, serveH2: ownH2 === undefined || (secure && cfg.clientCertAuth) ? undefined : (socket) => {
      // client-certificate authentication needs the TLS socket, which bridged streams lose
      grpcMetrics.trackConnection(socket);
      ownH2.serve(socket as net.Socket);
    } }));
    if (secure) logger.info("serving client traffic securely", { address: url.host });
    else logger.info("serving client traffic insecurely; this is strongly discouraged!", { address: url.host || url.pathname });
  }
  const clientListeners = listeners.client.map((l) => l.held.server);
  logger.info("ready to serve client requests", { name: cfg.name });

  let stopping: Promise<void> | undefined;
  return {
    server,
    clientListeners,
    stop: () => {
      stopping ??= (async () => {
        for (const l of clientListeners) l.close();
        for (const l of metricsListeners) {
          l.close();
          (l as http.Server).closeAllConnections();
        }
        injector.drain(1000);
        ownH2?.close();
        // A leader hands over first (the peer port stays up for it), as etcd's Stop does.
        corruption.stop();
        await server.transferLeadershipForStop();
        for (const { held } of listeners.peer) held.server.close();
        for (const peer of peerServers) peer.closeAllConnections();
        await transport.stop();
        await member.stop();
        grpcServer.forceShutdown();
        ownH2?.destroy();
        await tracing?.shutdown();
      })();
      return stopping;
    },
  };
}
