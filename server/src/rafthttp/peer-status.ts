/**
 * Whether a peer is reachable (etcd's peerStatus): active from the first successful exchange
 * until a failure, and since when (the member's strict reconfiguration checks read it).
 */
import type { Clock } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import { exponentialBuckets, HistogramCell } from "../pkg/metric-cells.js";

/** etcd's etcd_network_peer_round_trip_time_seconds buckets: 0.1 ms doubling, 16 of them. */
export const PEER_RTT_BUCKETS = exponentialBuckets(0.0001, 2, 16);

/**
 * What the metrics read of a peer (etcd's etcd_network_peer_* families): bytes and failures in
 * each direction, counted where the streams and the pipeline move them, and the probes' round
 * trips. Plain numbers: counting allocates nothing.
 */
export class PeerCounters {
  sentBytes = 0;
  receivedBytes = 0;
  sentFailures = 0;
  receivedFailures = 0;
  /** Times the peer went from active to inactive (etcd_network_disconnected_peers_total). */
  disconnected = 0;
  readonly roundTripSeconds = new HistogramCell(PEER_RTT_BUCKETS);
  /** Merged snapshots sent to the peer: etcd_network_snapshot_send_*. */
  snapshotsSent = 0;
  snapshotSendFailures = 0;
  snapshotSendInflight = 0;
  readonly snapshotSendSeconds = new HistogramCell(SNAPSHOT_TRANSFER_BUCKETS);
}

/** etcd's snapshot send and receive duration buckets: 0.1 s doubling, 10 of them. */
export const SNAPSHOT_TRANSFER_BUCKETS = exponentialBuckets(0.1, 2, 10);

export class PeerStatus {
  private activeSinceMs = 0;
  readonly counters = new PeerCounters();

  constructor(private readonly peerHex: string, private readonly deps: { clock: Clock; logger: Logger }) {}

  get active(): boolean {
    return this.activeSinceMs !== 0;
  }

  /** When the peer became active (ms since the epoch), 0 while it is not. */
  get since(): number {
    return this.activeSinceMs;
  }

  activate(): void {
    if (this.activeSinceMs !== 0) return;
    this.activeSinceMs = this.deps.clock.nowMs();
    this.deps.logger.info("peer became active", { "peer-id": this.peerHex });
  }

  deactivate(reason: string): void {
    if (this.activeSinceMs === 0) {
      this.deps.logger.debug("peer still unreachable", { "peer-id": this.peerHex, error: reason });
      return;
    }
    this.activeSinceMs = 0;
    this.counters.disconnected++;
    this.deps.logger.warn("peer became inactive (message send to peer failed)", { "peer-id": this.peerHex, error: reason });
  }
}
