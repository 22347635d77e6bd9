/**
 * Prometheus metrics under etcd's names, so existing dashboards and alerts work unchanged.
 * Gauges read the member's state when scraped; nothing is updated on the hot path here.
 */
import { Registry, Gauge, collectDefaultMetrics } from "prom-client";
import type { EtcdServer } from "../../server/etcd-server.js";
import { ETCD_API_VERSION } from "../../server/etcd-server.js";

export class Metrics {
  readonly registry = new Registry();

  constructor(server: EtcdServer) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    new Gauge({
      name: "etcd_server_has_leader", help: "Whether or not a leader exists. 1 is existence, 0 is not.", registers: [r],
      collect() { this.set(server.leader !== 0n ? 1 : 0); },
    });
    new Gauge({
      name: "etcd_server_is_leader", help: "Whether or not this member is a leader. 1 if is, 0 otherwise.", registers: [r],
      collect() { this.set(server.isLeader ? 1 : 0); },
    });
    new Gauge({
      name: "etcd_server_is_learner", help: "Whether or not this member is a learner. 1 if is, 0 otherwise.", registers: [r],
      collect() { this.set(server.isLearner ? 1 : 0); },
    });
    new Gauge({
      name: "etcd_server_proposals_committed_total", help: "The total number of consensus proposals committed.", registers: [r],
      collect() { this.set(server.committed); },
    });
    new Gauge({
      name: "etcd_server_proposals_applied_total", help: "The total number of consensus proposals applied.", registers: [r],
      collect() { this.set(server.applied); },
    });
    new Gauge({
      name: "etcd_server_proposals_pending", help: "The current number of pending proposals to commit.", registers: [r],
      collect() { this.set(server.pendingProposals); },
    });
    new Gauge({
      name: "etcd_mvcc_db_total_size_in_bytes", help: "Total size of the underlying database physically allocated in bytes.", registers: [r],
      async collect() { this.set(await server.store.sizeBytes()); },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_current_revision", help: "The current revision of store.", registers: [r],
      collect() { this.set(server.store.currentRevision); },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_compact_revision", help: "The revision of the last compaction in store.", registers: [r],
      collect() { this.set(Math.max(0, server.store.compactRevision)); },
    });
    new Gauge({
      name: "etcd_server_version", help: "Which version is running. 1 for 'server_version' label with current version.",
      labelNames: ["server_version"], registers: [r],
      collect() { this.set({ server_version: ETCD_API_VERSION }, 1); },
    });
  }
}
