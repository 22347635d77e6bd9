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
import https from "node:https";
import type net from "node:net";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { FsWalDir } from "../wal/wal-dir.js";
import { Snapshotter } from "../snap/snapshotter.js";
import { Backend } from "../mvcc/backend/backend.js";
import { systemClock } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import type { EtcdServer } from "../server/etcd-server.js";
import { HttpPeerVersions } from "../server/cluster/cluster-version.js";
import { bootstrapMember } from "../server/bootstrap.js";
import { serviceRegistry } from "../api/v3rpc/service-registry.js";
import { httpHandler } from "../api/http/http-handler.js";
import { v2Handler } from "../api/v2http/v2-handler.js";
import { listenClient } from "../api/listener/client-listener.js";
import { Metrics } from "../api/http/metrics.js";
import type { ServerConfig } from "./config.js";
import { applyAutoTls } from "./auto-tls.js";
import { planStart } from "./cluster-bootstrap.js";
import { PeerHttpClient, type PeerClientTls } from "../rafthttp/peer-http-client.js";
import { PeerClient } from "../rafthttp/peer-client.js";
import { sendSnapshot } from "../rafthttp/snapshot-sender.js";
import { createSnapshotHandler } from "../rafthttp/snapshot-handler.js";
import { etcdSnapshotDatabase } from "../server/etcd-database-image.js";
import { peerRequestHandler } from "../rafthttp/peer-server.js";
import { Transport } from "../rafthttp/transport.js";
import { RemovedFromClusterError } from "../rafthttp/peer-protocol.js";
import { peerServices } from "./peer-services.js";
import { PeerLeaderClient } from "./leader-client.js";
import { HttpPeerHashClient } from "./peer-hash-client.js";
import { answerPeerHashKV, CorruptionChecker } from "../server/corrupt-check.js";
import { AlarmRequest_AlarmAction, AlarmType } from "@etcd-ts/proto/etcdserverpb/rpc";

/** The largest v2 request body read (Go's form limit, 10 MB). */
const V2_BODY_BYTES_MAX = 10 << 20;

/**
 * WAL segments are reserved sparsely (ftruncate) by default: Node has no fallocate, and zero-
 * filling 64 MiB per segment (twice at start-up: the first segment and the pipeline's next) puts
 * a burst of writes on the disk that the fsyncs of the first client writes queue behind.
 * ETCD_TS_WAL_PREALLOCATION=zeros selects zero-filling.
 */
/**
 * ETCD_TS_UNSAFE_FOLLOWER_READS=1 breaks the member ON PURPOSE, for tests only: a follower serves
 * linearizable reads from its own state without ReadIndex (stale reads), so that the cluster
 * fault suite can show that its checks catch a violation. Never set it otherwise.
 */
const UNSAFE_FOLLOWER_READS = process.env["ETCD_TS_UNSAFE_FOLLOWER_READS"] === "1";
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

/** The peer TLS files (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file), read once. */
interface PeerTlsFiles {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
}

function readPeerTls(cfg: ServerConfig): PeerTlsFiles {
  const read = (f: string): Buffer | undefined => (f === "" ? undefined : readFileSync(f));
  return { cert: read(cfg.peerCertFile), key: read(cfg.peerKeyFile), ca: read(cfg.peerTrustedCaFile) };
}

/**
 * The peer listener's TLS, as etcd's: the peer certificate; with --peer-client-cert-auth every
 * client must present a certificate the trusted CA signed, and with --peer-cert-allowed-cn its
 * common name must be that one.
 */
function peerServerTls(cfg: ServerConfig, files: PeerTlsFiles): tls.TlsOptions {
  const options: tls.TlsOptions = { cert: files.cert, key: files.key, ca: files.ca, minVersion: "TLSv1.2" };
  if (cfg.peerClientCertAuth) {
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  return options;
}

/** Whether a peer's TLS connection shows the certificate --peer-cert-allowed-cn asks for. */
function peerCnAllowed(socket: tls.TLSSocket, allowedCn: string): boolean {
  return socket.authorized && socket.getPeerCertificate().subject?.CN === allowedCn;
}

export async function startMember(cfg: ServerConfig, logger: Logger): Promise<RunningMember> {
  const memberDir = path.join(cfg.dataDir, "member");
  const walDir = cfg.walDir !== "" ? cfg.walDir : path.join(memberDir, "wal");
  const snapDir = path.join(memberDir, "snap");
  // Self-signed pairs for --auto-tls/--peer-auto-tls fill the cert/key paths; then how the member
  // finds its cluster: restart from its WAL, start a new cluster, or join a running one.
  cfg = applyAutoTls(cfg, logger).cfg;
  const startPlan = await planStart(cfg, walDir, { logger });
  mkdirSync(snapDir, { recursive: true, mode: 0o700 });

  // The peer transport: built before the member (its PeerTransport), started once the member
  // exists, stopped before the member's storage closes.
  const peerTlsFiles = readPeerTls(cfg);
  const allowedCn = cfg.peerCertAllowedCn;
  const clientTlsForPeers: PeerClientTls = { ...peerTlsFiles, allowedCn: allowedCn || undefined };
  const peerClient = new PeerHttpClient({ tls: clientTlsForPeers });
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
          { ...identity, peerUrls: cfg.initialAdvertisePeerUrls, snapDir, tls: { ca: peerTlsFiles.ca, cert: peerTlsFiles.cert, key: peerTlsFiles.key } },
          { database: etcdSnapshotDatabase, logger: rafthttpLogger },
        );
        if (!r.ok) throw r.failure === "MemberRemoved" ? new RemovedFromClusterError() : new Error(`${r.failure}: ${r.error}`);
      },
      clock: systemClock,
      logger: rafthttpLogger,
    },
  );
  const leaderClient = new PeerLeaderClient(
    new PeerClient({ timeoutMs: 5000 + 2 * cfg.electionMs }, { client: new PeerHttpClient({ tls: clientTlsForPeers }) }),
    new PeerHttpClient({ tls: clientTlsForPeers }),
  );

  const member = await bootstrapMember(
    {
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
      initialCluster: startPlan.initialCluster,
      joinExisting: startPlan.joinExisting,
      initialClusterToken: cfg.initialClusterToken,
      preVote: cfg.preVote,
      enableLeaseCheckpoint: cfg.enableLeaseCheckpoint,
      unsafeNoFsync: cfg.unsafeNoFsync,
      autoCompactionMode: cfg.autoCompactionMode,
      autoCompactionRetention: cfg.autoCompactionRetention,
      strictReconfigCheck: cfg.strictReconfigCheck,
      ...(UNSAFE_FOLLOWER_READS ? { unsafeTestingKnobs: { followerReadsWithoutReadIndex: true } } : {}),
    },
    {
      wal: new FsWalDir({ dir: walDir, wal: { logger: logger.named("wal"), preallocation: WAL_PREALLOCATION } }),
      snapshotter: new Snapshotter({ dir: snapDir }, { logger: logger.named("snap") }),
      backend: await Backend.open(path.join(snapDir, "db")),
      transport,
      peerVersions: new HttpPeerVersions({ timeoutMs: 5000 }),
      peerActivity: { activeSince: (id) => transport.activeSince(id) || undefined },
      leaderClient,
      clock: systemClock,
      fatal: (message, fields) => {
        logger.error(`${message}; exiting`, fields);
        process.exit(1);
      },
      randomSeed: Date.now(),
      logger,
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
      client: new HttpPeerHashClient(new PeerHttpClient({ tls: clientTlsForPeers })),
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
  const v2 = cfg.enableV2 ? v2Handler(server, { name: cfg.name, bodyBytesMax: V2_BODY_BYTES_MAX }) : undefined;
  const http1 = http.createServer(httpHandler(server, metrics, services, v2));

  // The peer port: etcd's peer protocol (raft messages, streams, snapshots, members, leases).
  const receiveSnapshot = createSnapshotHandler(
    { ...identity, peerUrls: cfg.initialAdvertisePeerUrls, snapDir },
    { member: server, database: etcdSnapshotDatabase, logger: rafthttpLogger, addRemote: (id, urls) => transport.addRemote(id, urls) },
  );
  const peerHandler = peerRequestHandler(
    {},
    { services: { ...peerServices(server), hashKV: (revision) => answerPeerHashKV((r) => server.store.hashKV(r), revision) }, handler: server, streams: transport, snapshotHandler: (req, res) => void receiveSnapshot(req, res), logger: rafthttpLogger },
  );
  // As etcd, the member starts (and hands its peers to the transport) before the peer port
  // serves: a peer's stream request then finds this member knowing it, instead of a 404 that
  // costs the peer a redial (a joining member's streams are up as soon as it is ready).
  member.start();
  const peerListeners: net.Server[] = [];
  for (const u of cfg.listenPeerUrls) {
    const url = new URL(u);
    let peer: http.Server;
    if (url.protocol === "https:") {
      if (peerTlsFiles.cert === undefined || peerTlsFiles.key === undefined) {
        throw new Error(`cannot listen on TLS for ${url.host}: KeyFile and CertFile are not presented`);
      }
      peer = https.createServer(peerServerTls(cfg, peerTlsFiles), peerHandler);
      if (allowedCn !== "") {
        peer.on("secureConnection", (socket: tls.TLSSocket) => {
          if (!peerCnAllowed(socket, allowedCn)) socket.destroy();
        });
      }
    } else {
      peer = http.createServer(peerHandler);
    }
    peer.requestTimeout = 0;
    peer.keepAliveTimeout = 0;
    await new Promise<void>((resolve, reject) => {
      peer.once("error", reject);
      peer.listen({ host: url.hostname === "localhost" ? "127.0.0.1" : url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || 2380) }, () => resolve());
    });
    peerListeners.push(peer);
  }
  corruption.start();
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
        for (const l of clientListeners) l.close();
        injector.drain(1000);
        // A leader hands over first (the peer port stays up for it), as etcd's Stop does.
        corruption.stop();
        await server.transferLeadershipForStop();
        for (const l of peerListeners) {
          l.close();
          (l as http.Server).closeAllConnections();
        }
        await transport.stop();
        await member.stop();
        grpcServer.forceShutdown();
      })();
      return stopping;
    },
  };
}
