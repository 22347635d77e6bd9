/**
 * The peer transport (etcd's rafthttp.Transport): delivers this member's raft messages and
 * merged snapshots to the other members over etcd 3.4's peer protocol, and hands what the peer
 * server receives to the member (PeerHandler). Peers are added, updated and removed by the
 * member as its membership changes; members not yet known that reach this one become remotes.
 *
 * Lifecycle: construct (no I/O; the member's bootstrap takes it as its PeerTransport), start()
 * with the member's IDs and its receiving end once the member exists, then the member adds its
 * peers (their stream readers begin dialling); stop() before the member's storage closes.
 * Before start, and for unknown members, messages are dropped.
 */
import type http from "node:http";
import type { Message, NodeId } from "../raft/types.js";
import type { Clock } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import type { MergedSnapshot, PeerHandler } from "../server/transport-port.js";
import { Peer, Remote, type PeerDeps, type SnapshotSender } from "./peer.js";
import type { PeerHttpClient } from "./peer-http-client.js";
import { idHex, senderHeaders } from "./peer-protocol.js";
import type { StreamType } from "./stream.js";
import type { PeerCounters } from "./peer-status.js";

export interface TransportOptions {
  /** This member's advertised peer URLs (sent as X-PeerURLs). */
  peerUrls: readonly string[];
}

/** The member the transport works for (known once it is bootstrapped). */
export interface TransportMember {
  memberId: NodeId;
  clusterId: bigint;
  handler: PeerHandler;
}

export interface TransportDeps {
  client: PeerHttpClient;
  /** The snapshot path (POST /raft/snapshot); without one every snapshot is reported failed. */
  snapshotSender?: SnapshotSender;
  clock: Clock;
  logger: Logger;
}

/** What the peer server needs of the transport: attaching streams and learning remotes. */
export interface StreamRegistry {
  /** Whether `id` is a peer (streams are accepted only from peers). */
  hasPeer(id: NodeId): boolean;
  /** Makes `res` the stream writer of `type` to peer `id`. @returns false when it is no peer */
  attachStream(id: NodeId, type: StreamType, res: http.ServerResponse): boolean;
  /** A member not yet known reached us with these peer URLs. */
  addRemote(id: NodeId, urls: readonly string[]): void;
  /** A pipeline message of `bytes` arrived from `from` (its received-bytes count). */
  countReceived?(from: NodeId, bytes: number): void;
}

/**
 * Satisfies the member's PeerTransport (server/raft-node.ts) structurally: send, flush,
 * sendSnapshot, addPeer, updatePeer, removePeer, activeSince.
 */
export class Transport implements StreamRegistry {
  private readonly peers = new Map<NodeId, Peer>();
  private readonly remotes = new Map<NodeId, Remote>();
  private peerDeps: PeerDeps | undefined;
  private stopped = false;
  private memberId: NodeId | undefined;

  constructor(readonly options: TransportOptions, private readonly deps: TransportDeps) {}

  /** Begins delivering for `member`: received messages go to its handler. */
  start(member: TransportMember): void {
    if (this.peerDeps !== undefined) return;
    this.memberId = member.memberId;
    this.peerDeps = {
      client: this.deps.client,
      headers: senderHeaders({ ...member, peerUrls: this.options.peerUrls }),
      localId: member.memberId,
      handler: member.handler,
      snapshotSender: this.deps.snapshotSender,
      clock: this.deps.clock,
      logger: this.deps.logger,
    };
  }

  send(messages: Message[]): void {
    for (const m of messages) {
      if (m.to === 0n) continue;
      const peer = this.peers.get(m.to);
      if (peer !== undefined) {
        peer.send(m);
        continue;
      }
      const remote = this.remotes.get(m.to);
      if (remote !== undefined) remote.send(m);
      else this.deps.logger.debug("ignored message send request; unknown remote peer target", { "unknown-target-peer-id": idHex(m.to) });
    }
  }

  /**
   * Writes out now what send() wrote in this turn to the peers' streams. Without it they go out at
   * process.nextTick (node:http's corking), after the rest of the turn and its promise jobs.
   */
  flush(): void {
    for (const peer of this.peers.values()) peer.flush();
  }

  sendSnapshot(merged: MergedSnapshot): void {
    const to = merged.message.to;
    const peer = this.peers.get(to);
    if (peer !== undefined) {
      peer.sendSnapshot(merged);
      return;
    }
    this.deps.logger.warn("snapshot to an unknown peer reported failed", { "remote-peer-id": idHex(to) });
    this.peerDeps?.handler.reportSnapshot(to, false);
  }

  /** Adds a peer (idempotent: a known peer's URLs are updated). Ignored before start or for self. */
  addPeer(id: NodeId, peerUrls: readonly string[]): void {
    if (this.stopped || this.peerDeps === undefined || id === this.memberId || peerUrls.length === 0) return;
    const known = this.peers.get(id);
    if (known !== undefined) {
      known.update(peerUrls);
      return;
    }
    const peer = new Peer(id, peerUrls, this.peerDeps);
    this.peers.set(id, peer);
    peer.start();
    this.deps.logger.info("added remote peer", { "remote-peer-id": idHex(id), "remote-peer-urls": peerUrls });
  }

  removePeer(id: NodeId): void {
    const peer = this.peers.get(id);
    this.peers.delete(id);
    this.remotes.get(id)?.stop();
    this.remotes.delete(id);
    if (peer === undefined) return;
    void peer.stop();
    this.deps.logger.info("removed remote peer", { "removed-remote-peer-id": idHex(id) });
  }

  updatePeer(id: NodeId, peerUrls: readonly string[]): void {
    if (peerUrls.length === 0) return;
    this.peers.get(id)?.update(peerUrls);
  }

  /** When the connection to `id` became active (ms since the epoch), 0 when it is not active. */
  activeSince(id: NodeId): number {
    return this.peers.get(id)?.status.since ?? 0;
  }

  /** Each peer's counters (etcd_network_peer_* metrics), by the peer's hex ID. */
  peerCounters(): Array<{ peer: string; active: boolean; counters: PeerCounters }> {
    return [...this.peers.values()].map((p) => ({ peer: idHex(p.id), active: p.status.active, counters: p.status.counters }));
  }

  /** This member's ID in hex once started ("" before). */
  get localHex(): string {
    return this.memberId === undefined ? "" : idHex(this.memberId);
  }

  countReceived(from: NodeId, bytes: number): void {
    const peer = this.peers.get(from);
    if (peer !== undefined) peer.status.counters.receivedBytes += bytes;
  }

  hasPeer(id: NodeId): boolean {
    return this.peers.has(id);
  }

  attachStream(id: NodeId, type: StreamType, res: http.ServerResponse): boolean {
    const peer = this.peers.get(id);
    if (peer === undefined || this.stopped) return false;
    peer.attachStream(type, res);
    return true;
  }

  addRemote(id: NodeId, urls: readonly string[]): void {
    if (this.stopped || this.peerDeps === undefined || id === this.memberId || this.peers.has(id) || this.remotes.has(id) || urls.length === 0) return;
    this.remotes.set(id, new Remote(id, urls, this.peerDeps));
    this.deps.logger.info("added new remote peer", { "remote-peer-id": idHex(id), "remote-peer-urls": urls });
  }

  /** Closes every stream and stops every path; nothing is delivered after it resolves. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const peers = [...this.peers.values()];
    this.peers.clear();
    for (const r of this.remotes.values()) r.stop();
    this.remotes.clear();
    await Promise.all(peers.map((p) => p.stop()));
    this.deps.client.close();
  }
}
