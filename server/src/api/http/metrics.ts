/**
 * /metrics: etcd 3.4's metric families under etcd's names, types, labels and buckets (see
 * metric-families.ts), so etcd's Grafana dashboard and alert rules work unchanged, followed by
 * Node's process metrics (prom-client's defaults: process_*, nodejs_*; etcd has go_* there).
 *
 * Nothing here runs on the request path: the layers count into their own cells (plain numbers
 * and pkg/metric-cells.ts histograms) and this module reads them, and the member's state, when
 * scraped, writing the Prometheus text format itself (values and `le` bounds printed as Go's
 * client prints them; families without series left out, as Go's client leaves them).
 */
import { readdirSync, readFileSync } from "node:fs";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { EtcdServer } from "../../server/etcd-server.js";
import { ETCD_API_VERSION } from "../../server/etcd-server.js";
import { GRPC_CODE_NAMES, type GrpcMetrics } from "../v3rpc/service-registry.js";
import { exponentialBuckets, HistogramCell } from "../../pkg/metric-cells.js";
import type { WalObserver } from "../../wal/wal.js";
import { FAMILIES, type FamilyName } from "./metric-families.js";

/** The WAL's timings and bytes (etcd_disk_wal_*), fed by the WAL's observer hook. */
export class WalCells implements WalObserver {
  readonly fsyncSeconds = new HistogramCell(exponentialBuckets(0.001, 2, 14));
  writtenBytes = 0;

  observeFsyncSeconds(seconds: number): void {
    this.fsyncSeconds.observe(seconds);
  }

  addWrittenBytes(bytes: number): void {
    this.writtenBytes += bytes;
  }
}

/** A peer's counters as the transport keeps them (rafthttp/peer-status.ts PeerCounters). */
export interface PeerCountersView {
  sentBytes: number;
  receivedBytes: number;
  sentFailures: number;
  receivedFailures: number;
  disconnected: number;
  roundTripSeconds: HistogramCell;
  snapshotsSent: number;
  snapshotSendFailures: number;
  snapshotSendInflight: number;
  snapshotSendSeconds: HistogramCell;
}

/** What /metrics reads of the peer transport. */
export interface PeerMetricsSource {
  /** This member's ID in hex. */
  readonly localHex: string;
  peerCounters(): Array<{ peer: string; active: boolean; counters: PeerCountersView }>;
}

/** What /metrics reads of the snapshot files' writer (snap/snapshotter.ts). */
export interface SnapshotMetricsSource {
  readonly counters: { marshallingSeconds: HistogramCell; saveSeconds: HistogramCell; fsyncSeconds: HistogramCell };
}

/** What /metrics reads of the lessor (lease/lessor.ts LessorCounters). */
interface LessorCountersView {
  granted: number;
  revoked: number;
  renewed: number;
  ttlSeconds: HistogramCell;
}

/** What /metrics reads of received snapshot databases (rafthttp/snapshot-handler.ts). */
export interface SnapshotDbMetricsSource {
  saveSeconds: HistogramCell;
  fsyncSeconds: HistogramCell;
  /** Per sender (hex ID): snapshots received, failed, in flight, and their durations. */
  bySender: ReadonlyMap<string, { received: number; failures: number; inflight: number; seconds: HistogramCell }>;
}

export interface MetricsDeps {
  server: EtcdServer;
  /** The gRPC services' counters (absent: no grpc_server_* series). */
  grpc?: GrpcMetrics;
  peers?: PeerMetricsSource;
  wal?: WalCells;
  snapshotter?: SnapshotMetricsSource;
  snapshotDb?: SnapshotDbMetricsSource;
}

/** etcd's default backend quota (2 GiB) when --quota-backend-bytes is 0. */
const DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;

/** A number as Go's strconv.FormatFloat(v, 'g', -1, 64) prints it (Prometheus' Go client). */
export function goFloat(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (v === 0) return "0";
  const e = v.toExponential();
  const at = e.indexOf("e");
  const exp = Number(e.slice(at + 1));
  if (exp < -4 || exp >= 6) {
    const digits = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : String(Math.abs(exp));
    return `${e.slice(0, at)}e${exp < 0 ? "-" : "+"}${digits}`;
  }
  return String(v);
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Builds the text exposition, one family at a time. */
class Exposition {
  private readonly out: string[] = [];

  /** `{a="x",b="y"}` for the family's label names (sorted, as Go prints them) and `values`. */
  private labels(name: FamilyName, values: readonly string[], extra?: string): string {
    const names = FAMILIES[name].labels as readonly string[];
    if (names.length === 0 && extra === undefined) return "";
    const pairs = names.map((n, i) => [n, values[i] ?? ""] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const parts = pairs.map(([n, v]) => `${n}="${escapeLabel(v)}"`);
    if (extra !== undefined) parts.push(extra);
    return `{${parts.join(",")}}`;
  }

  private head(name: FamilyName): void {
    const f = FAMILIES[name];
    this.out.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`);
  }

  /** A family without labels: one sample. */
  scalar(name: FamilyName, value: number): void {
    this.head(name);
    this.out.push(`${name} ${goFloat(value)}`);
  }

  /** A labelled counter or gauge; left out when it has no series. */
  series(name: FamilyName, rows: Iterable<readonly [readonly string[], number]>): void {
    let headed = false;
    for (const [values, v] of rows) {
      if (!headed) this.head(name);
      headed = true;
      this.out.push(`${name}${this.labels(name, values)} ${goFloat(v)}`);
    }
  }

  /** A histogram family; rows of label values and the cell (no labels: one row of []). */
  histograms(name: FamilyName, rows: Iterable<readonly [readonly string[], HistogramCell]>): void {
    let headed = false;
    for (const [values, cell] of rows) {
      if (!headed) this.head(name);
      headed = true;
      let cumulative = 0;
      for (let i = 0; i < cell.bounds.length; i++) {
        cumulative += cell.counts[i]!;
        this.out.push(`${name}_bucket${this.labels(name, values, `le="${goFloat(cell.bounds[i]!)}"`)} ${goFloat(cumulative)}`);
      }
      this.out.push(`${name}_bucket${this.labels(name, values, 'le="+Inf"')} ${goFloat(cell.count)}`);
      const plain = this.labels(name, values);
      this.out.push(`${name}_sum${plain} ${goFloat(cell.sum)}`, `${name}_count${plain} ${goFloat(cell.count)}`);
    }
  }

  histogram(name: FamilyName, cell: HistogramCell): void {
    this.histograms(name, [[[], cell]]);
  }

  text(): string {
    return this.out.length === 0 ? "" : this.out.join("\n") + "\n";
  }
}

/** Open file descriptors and their limit, from /proc (os_fd_used, os_fd_limit); undefined elsewhere. */
function fileDescriptors(): { used: number; limit: number } | undefined {
  try {
    const used = readdirSync("/proc/self/fd").length;
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const limit = line === undefined ? NaN : Number(line.split(/\s+/)[3]);
    return { used, limit };
  } catch {
    return undefined;
  }
}

/** "3.4.0" → "3.4", as etcd labels its cluster version. */
function majorMinor(version: string): string {
  const m = /^(\d+)\.(\d+)/.exec(version);
  return m === null ? version : `${m[1]}.${m[2]}`;
}

export class Metrics {
  /** Node's process metrics (prom-client's default collectors). */
  private readonly processRegistry = new Registry();
  /** /health answers (etcd_server_health_success / _failures). */
  healthSuccesses = 0;
  healthFailures = 0;
  readonly contentType = "text/plain; version=0.0.4; charset=utf-8";

  constructor(private readonly deps: MetricsDeps) {
    collectDefaultMetrics({ register: this.processRegistry });
  }

  /** Counts one /health answer. */
  recordHealth(ok: boolean): void {
    if (ok) this.healthSuccesses++;
    else this.healthFailures++;
  }

  /** The whole exposition: etcd's families, then the process metrics. */
  async text(): Promise<string> {
    const x = new Exposition();
    await this.writeEtcd(x);
    this.writeGrpc(x);
    return x.text() + (await this.processRegistry.metrics());
  }

  private async writeEtcd(x: Exposition): Promise<void> {
    const { server, peers, wal, snapshotter, snapshotDb } = this.deps;
    const store = server.store;
    const view = store.metricsView?.();
    const stats = server.stats;
    const lessor = (server.lessor as unknown as { counters?: LessorCountersView }).counters;
    const [dbSize, dbInUse] = await Promise.all([store.sizeBytes(), view?.sizeInUseBytes() ?? Promise.resolve(0)]);

    // etcdserver
    x.scalar("etcd_server_has_leader", server.leader !== 0n ? 1 : 0);
    x.scalar("etcd_server_is_leader", server.isLeader ? 1 : 0);
    x.scalar("etcd_server_leader_changes_seen_total", stats.leaderChanges);
    x.scalar("etcd_server_is_learner", server.isLearner ? 1 : 0);
    x.series("etcd_server_learner_promote_failures", [...stats.learnerPromoteFailures].map(([reason, n]) => [[reason], n] as const));
    x.scalar("etcd_server_learner_promote_successes", stats.learnerPromoteSuccesses);
    x.scalar("etcd_server_heartbeat_send_failures_total", 0);
    x.scalar("etcd_server_slow_apply_total", stats.slowApplies);
    x.scalar("etcd_server_snapshot_apply_in_progress_total", 0);
    x.scalar("etcd_server_proposals_committed_total", server.committed);
    x.scalar("etcd_server_proposals_applied_total", server.applied);
    x.scalar("etcd_server_proposals_pending", server.pendingProposals);
    x.scalar("etcd_server_proposals_failed_total", stats.proposalsFailed);
    x.scalar("etcd_server_slow_read_indexes_total", stats.slowReadIndexes);
    x.scalar("etcd_server_read_indexes_failed_total", stats.readIndexesFailed);
    x.scalar("etcd_debugging_server_lease_expired_total", stats.leasesExpired);
    x.scalar("etcd_server_quota_backend_bytes", server.options.quotaBackendBytes > 0 ? server.options.quotaBackendBytes : DEFAULT_QUOTA_BYTES);
    x.series("etcd_server_version", [[[ETCD_API_VERSION], 1]]);
    x.series("etcd_server_id", [[[server.memberId.toString(16)], 1]]);
    const fds = fileDescriptors();
    if (fds !== undefined) {
      x.scalar("os_fd_used", fds.used);
      x.scalar("os_fd_limit", fds.limit);
    }
    const clusterVersion = server.membership.clusterVersion;
    if (clusterVersion !== "") x.series("etcd_cluster_version", [[[majorMinor(clusterVersion)], 1]]);
    x.scalar("etcd_server_health_success", this.healthSuccesses);
    x.scalar("etcd_server_health_failures", this.healthFailures);
    x.scalar("etcd_debugging_auth_revision", 1);

    // mvcc and its backend
    if (view !== undefined) {
      const m = view.mvcc;
      x.scalar("etcd_mvcc_range_total", m.ranges);
      x.scalar("etcd_debugging_mvcc_range_total", m.ranges);
      x.scalar("etcd_mvcc_put_total", m.puts);
      x.scalar("etcd_debugging_mvcc_put_total", m.puts);
      x.scalar("etcd_mvcc_delete_total", m.deletes);
      x.scalar("etcd_debugging_mvcc_delete_total", m.deletes);
      x.scalar("etcd_mvcc_txn_total", m.txns);
      x.scalar("etcd_debugging_mvcc_txn_total", m.txns);
      x.scalar("etcd_debugging_mvcc_keys_total", view.keys);
      x.scalar("etcd_debugging_mvcc_watch_stream_total", this.openStreams("etcdserverpb.Watch", "Watch"));
      x.scalar("etcd_debugging_mvcc_watcher_total", view.watchers.synced + view.watchers.unsynced);
      x.scalar("etcd_debugging_mvcc_slow_watcher_total", view.watchers.unsynced);
      x.scalar("etcd_debugging_mvcc_events_total", view.eventsSent);
      x.scalar("etcd_debugging_mvcc_pending_events_total", 0);
      x.histogram("etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds", m.indexCompactionPauseMs);
      x.histogram("etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds", m.dbCompactionPauseMs);
      x.histogram("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds", m.dbCompactionTotalMs);
      x.scalar("etcd_debugging_mvcc_db_compaction_keys_total", m.compactedKeys);
      x.histogram("etcd_mvcc_hash_duration_seconds", m.hashSeconds);
      x.histogram("etcd_mvcc_hash_rev_duration_seconds", m.hashRevSeconds);
      x.scalar("etcd_debugging_mvcc_total_put_size_in_bytes", m.putBytes);
      const b = view.backend;
      x.histogram("etcd_disk_backend_commit_duration_seconds", b.commitSeconds);
      // LevelDB's write is the whole commit: bbolt's write phase has no separate counterpart.
      x.histogram("etcd_debugging_disk_backend_commit_write_duration_seconds", b.commitSeconds);
      x.histogram("etcd_disk_backend_defrag_duration_seconds", b.defragSeconds);
      x.histogram("etcd_disk_backend_snapshot_duration_seconds", b.snapshotSeconds);
      x.scalar("etcd_disk_defrag_inflight", b.defragInflight > 0 ? 1 : 0);
      x.scalar("etcd_mvcc_db_open_read_transactions", b.openReads);
    }
    x.scalar("etcd_mvcc_db_total_size_in_bytes", dbSize);
    x.scalar("etcd_debugging_mvcc_db_total_size_in_bytes", dbSize);
    x.scalar("etcd_mvcc_db_total_size_in_use_in_bytes", dbInUse);
    x.scalar("etcd_debugging_mvcc_current_revision", store.currentRevision);
    x.scalar("etcd_debugging_mvcc_compact_revision", Math.max(0, store.compactRevision));

    // WAL and snapshot files
    if (wal !== undefined) {
      x.histogram("etcd_disk_wal_fsync_duration_seconds", wal.fsyncSeconds);
      x.scalar("etcd_disk_wal_write_bytes_total", wal.writtenBytes);
    }
    if (snapshotter !== undefined) {
      const s = snapshotter.counters;
      x.histogram("etcd_debugging_snap_save_marshalling_duration_seconds", s.marshallingSeconds);
      x.histogram("etcd_debugging_snap_save_total_duration_seconds", s.saveSeconds);
      x.histogram("etcd_snap_fsync_duration_seconds", s.fsyncSeconds);
    }

    if (snapshotDb !== undefined) {
      x.histogram("etcd_snap_db_save_total_duration_seconds", snapshotDb.saveSeconds);
      x.histogram("etcd_snap_db_fsync_duration_seconds", snapshotDb.fsyncSeconds);
    }

    // leases
    if (lessor !== undefined) {
      x.scalar("etcd_debugging_lease_granted_total", lessor.granted);
      x.scalar("etcd_debugging_lease_revoked_total", lessor.revoked);
      x.scalar("etcd_debugging_lease_renewed_total", lessor.renewed);
      x.histogram("etcd_debugging_lease_ttl_total", lessor.ttlSeconds);
    }

    // peers
    if (peers !== undefined) {
      const list = peers.peerCounters();
      const local = peers.localHex;
      x.series("etcd_network_active_peers", list.filter((p) => p.active).map((p) => [[local, p.peer], 1] as const));
      x.series("etcd_network_peer_sent_bytes_total", list.map((p) => [[p.peer], p.counters.sentBytes] as const));
      x.series("etcd_network_peer_received_bytes_total", list.map((p) => [[p.peer], p.counters.receivedBytes] as const));
      x.series("etcd_network_peer_sent_failures_total", list.filter((p) => p.counters.sentFailures > 0).map((p) => [[p.peer], p.counters.sentFailures] as const));
      x.series("etcd_network_peer_received_failures_total", list.filter((p) => p.counters.receivedFailures > 0).map((p) => [[p.peer], p.counters.receivedFailures] as const));
      x.histograms("etcd_network_peer_round_trip_time_seconds", list.filter((p) => p.counters.roundTripSeconds.count > 0).map((p) => [[p.peer], p.counters.roundTripSeconds] as const));
      x.series("etcd_network_disconnected_peers_total", list.filter((p) => p.counters.disconnected > 0).map((p) => [[local, p.peer], p.counters.disconnected] as const));
      // Like etcd's, a peer's snapshot series appear with its first snapshot.
      const sending = list.filter((p) => p.counters.snapshotsSent + p.counters.snapshotSendFailures + p.counters.snapshotSendInflight > 0);
      x.series("etcd_network_snapshot_send_success", sending.filter((p) => p.counters.snapshotsSent > 0).map((p) => [[p.peer], p.counters.snapshotsSent] as const));
      x.series("etcd_network_snapshot_send_failures", sending.filter((p) => p.counters.snapshotSendFailures > 0).map((p) => [[p.peer], p.counters.snapshotSendFailures] as const));
      x.series("etcd_network_snapshot_send_inflights_total", sending.map((p) => [[p.peer], p.counters.snapshotSendInflight] as const));
      x.histograms("etcd_network_snapshot_send_total_duration_seconds", sending.filter((p) => p.counters.snapshotsSent > 0).map((p) => [[p.peer], p.counters.snapshotSendSeconds] as const));
    }
    if (snapshotDb !== undefined && snapshotDb.bySender.size > 0) {
      const senders = [...snapshotDb.bySender];
      x.series("etcd_network_snapshot_receive_success", senders.filter(([, c]) => c.received > 0).map(([from, c]) => [[from], c.received] as const));
      x.series("etcd_network_snapshot_receive_failures", senders.filter(([, c]) => c.failures > 0).map(([from, c]) => [[from], c.failures] as const));
      x.series("etcd_network_snapshot_receive_inflights_total", senders.map(([from, c]) => [[from], c.inflight] as const));
      x.histograms("etcd_network_snapshot_receive_total_duration_seconds", senders.filter(([, c]) => c.received > 0).map(([from, c]) => [[from], c.seconds] as const));
    }
  }

  /** Streams of `service`/`method` open now: started less handled. */
  private openStreams(service: string, method: string): number {
    const m = this.deps.grpc?.methods.find((c) => c.service === service && c.method === method);
    if (m === undefined) return 0;
    let handled = 0;
    for (const n of m.handled) handled += n;
    return m.started - handled;
  }

  private writeGrpc(x: Exposition): void {
    const grpc = this.deps.grpc;
    if (grpc === undefined) return;
    const bytes = grpc.clientBytes();
    x.scalar("etcd_network_client_grpc_sent_bytes_total", bytes.sent);
    x.scalar("etcd_network_client_grpc_received_bytes_total", bytes.received);
    x.series("etcd_server_client_requests_total", grpc.clientRequests());
    const methods = grpc.methods;
    const key = (m: (typeof methods)[number]): string[] => [m.type, m.service, m.method];
    x.series("grpc_server_started_total", methods.map((m) => [key(m), m.started] as const));
    x.series(
      "grpc_server_handled_total",
      methods.flatMap((m) => GRPC_CODE_NAMES.map((code, i) => [[m.type, m.service, m.method, code], m.handled[i]!] as const)),
    );
    x.series("grpc_server_msg_received_total", methods.map((m) => [key(m), m.received] as const));
    x.series("grpc_server_msg_sent_total", methods.map((m) => [key(m), m.sent] as const));
    x.histograms("grpc_server_handling_seconds", methods.filter((m) => m.handling !== undefined).map((m) => [key(m), m.handling!] as const));
  }
}
