/**
 * Whether a peer is reachable (etcd's peerStatus): active from the first successful exchange
 * until a failure, and since when (the member's strict reconfiguration checks read it).
 */
import type { Clock } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";

export class PeerStatus {
  private activeSinceMs = 0;

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
    this.deps.logger.warn("peer became inactive (message send to peer failed)", { "peer-id": this.peerHex, error: reason });
  }
}
