/**
 * One peer as the transport reaches it (etcd's peer): a URL picker over its peer URLs, its
 * status, a pipeline, the two stream writers (the streams the peer opened to this member) and
 * the two stream readers (the streams this member opens to it), and its snapshot path.
 *
 * Which path a message takes (etcd's peer.pick): a MsgApp goes down the msgapp stream when that
 * is up; anything goes down the message stream when that is up; otherwise the pipeline. When
 * the chosen path's buffer is full the message is dropped and raft is told the peer is
 * unreachable (it then probes the peer instead of streaming to it).
 *
 * A remote (etcd's remote) is a member this one does not know yet but that reached it, named by
 * the X-PeerURLs of its requests: only a pipeline, so that answers reach it.
 */
import type http from "node:http";
import { MessageType, type Message, type NodeId } from "../raft/types.js";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import type { MergedSnapshot, PeerHandler } from "../server/transport-port.js";
import type { PeerHttpClient } from "./peer-http-client.js";
import { idHex, RemovedFromClusterError } from "./peer-protocol.js";
import { PeerStatus } from "./peer-status.js";
import { Pipeline } from "./pipeline.js";
import { StreamReader, StreamWriter, type StreamType } from "./stream.js";
import { UrlPicker } from "./url-picker.js";

/**
 * Sends one merged snapshot to a peer (POST /raft/snapshot); resolves when the peer answered
 * that it took it whole. @throws RemovedFromClusterError when the peer answered that this member
 * was removed (403); Error when it did not take it otherwise.
 */
export type SnapshotSender = (
  target: { url: string; to: NodeId; headers: Record<string, string> },
  merged: MergedSnapshot,
) => Promise<void>;

export interface PeerDeps {
  client: PeerHttpClient;
  /** The headers of every request this member sends. */
  headers: Record<string, string>;
  localId: NodeId;
  handler: PeerHandler;
  /** The snapshot path; without one every snapshot is reported failed. */
  snapshotSender: SnapshotSender | undefined;
  clock: Clock;
  logger: Logger;
}

/** How often a peer's /raft/probing is asked, for its round-trip time (etcd's prober: 4-5 s). */
export const PROBE_INTERVAL_MS = 5000;
const PROBE_TIMEOUT_MS = 5000;

export class Peer {
  readonly status: PeerStatus;
  private prober: TimerHandle | undefined;
  private probing = false;
  private readonly picker: UrlPicker;
  private readonly pipeline: Pipeline;
  private readonly writers: Record<StreamType, StreamWriter>;
  private readonly readers: StreamReader[];
  private readonly hex: string;
  private stopped = false;

  constructor(readonly id: NodeId, urls: readonly string[], private readonly deps: PeerDeps) {
    this.hex = idHex(id);
    const logger = deps.logger;
    this.status = new PeerStatus(this.hex, { clock: deps.clock, logger });
    this.picker = new UrlPicker(urls);
    const common = { picker: this.picker, status: this.status, client: deps.client, headers: deps.headers, logger };
    this.pipeline = new Pipeline(id, { ...common, handler: deps.handler });
    this.writers = {
      msgapp: new StreamWriter("msgapp", this.hex, { status: this.status, clock: deps.clock, logger }),
      message: new StreamWriter("message", this.hex, { status: this.status, clock: deps.clock, logger }),
    };
    const readerDeps = { ...common, localId: deps.localId, handler: deps.handler, clock: deps.clock };
    this.readers = [new StreamReader("msgapp", id, readerDeps), new StreamReader("message", id, readerDeps)];
  }

  start(): void {
    for (const r of this.readers) r.start();
    this.prober ??= this.deps.clock.setInterval(() => this.probe(), PROBE_INTERVAL_MS, { unref: true });
  }

  /** One GET /raft/probing; its round trip goes to the peer's round-trip histogram. */
  private probe(): void {
    if (this.probing || this.stopped) return;
    this.probing = true;
    const started = performance.now();
    const url = this.picker.pick().replace(/\/+$/, "") + "/raft/probing";
    this.deps.client.request(url, "GET", this.deps.headers, undefined, PROBE_TIMEOUT_MS).then(
      (res) => {
        this.probing = false;
        if (res.status === 200 && !this.stopped) this.status.counters.roundTripSeconds.observe((performance.now() - started) / 1000);
      },
      () => {
        this.probing = false;
      },
    );
  }

  send(m: Message): void {
    const app = this.writers.msgapp;
    const msg = this.writers.message;
    const path = m.type === MessageType.App && app.working ? app : msg.working ? msg : this.pipeline;
    if (!path.send(m) && !this.stopped) {
      this.status.counters.sentFailures++;
      const name = path === app ? "msgapp stream" : path === msg ? "message stream" : "pipeline";
      this.deps.logger.warn("dropped internal raft message since sending buffer is full", { "message-type": MessageType[m.type], "remote-peer-id": this.hex, path: name });
      this.deps.handler.reportUnreachable(m.to);
    }
  }

  /** Writes out now what this turn sent on the streams (see Transport.flush). */
  flush(): void {
    this.writers.msgapp.push();
    this.writers.message.push();
  }

  sendSnapshot(merged: MergedSnapshot): void {
    const { handler, snapshotSender, logger } = this.deps;
    if (snapshotSender === undefined || this.stopped) {
      logger.warn("no snapshot path to the peer; reporting the snapshot failed", { "remote-peer-id": this.hex });
      handler.reportSnapshot(this.id, false);
      return;
    }
    const url = this.picker.pick();
    const counters = this.status.counters;
    const started = performance.now();
    counters.snapshotSendInflight++;
    snapshotSender({ url, to: this.id, headers: this.deps.headers }, merged).then(
      () => {
        counters.snapshotSendInflight--;
        counters.snapshotsSent++;
        counters.snapshotSendSeconds.observe((performance.now() - started) / 1000);
        this.status.activate();
        logger.info("sent database snapshot", { "remote-peer-id": this.hex, index: merged.message.snapshot?.metadata.index });
        handler.reportSnapshot(this.id, true);
      },
      (err: Error) => {
        counters.snapshotSendInflight--;
        counters.snapshotSendFailures++;
        this.picker.unreachable(url);
        this.status.deactivate(`snapshot: ${err.message}`);
        logger.warn("failed to send database snapshot", { "remote-peer-id": this.hex, error: err.message });
        handler.reportUnreachable(this.id);
        handler.reportSnapshot(this.id, false);
        if (err instanceof RemovedFromClusterError) handler.reportRemoved();
      },
    );
  }

  update(urls: readonly string[]): void {
    this.picker.update(urls);
  }

  /** The peer opened a stream to this member: its answer becomes our writer of that type. */
  attachStream(type: StreamType, res: http.ServerResponse): void {
    this.writers[type].attach(res);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.prober !== undefined) this.deps.clock.clearInterval(this.prober);
    this.pipeline.stop();
    this.writers.msgapp.stop();
    this.writers.message.stop();
    await Promise.all(this.readers.map((r) => r.stop()));
  }
}

/** A member known only from its requests' X-PeerURLs: a pipeline to answer it. */
export class Remote {
  private readonly picker: UrlPicker;
  private readonly pipeline: Pipeline;

  constructor(readonly id: NodeId, urls: readonly string[], private readonly deps: PeerDeps) {
    this.picker = new UrlPicker(urls);
    const status = new PeerStatus(idHex(id), { clock: deps.clock, logger: deps.logger });
    this.pipeline = new Pipeline(id, { picker: this.picker, status, client: deps.client, headers: deps.headers, handler: deps.handler, logger: deps.logger });
  }

  send(m: Message): void {
    if (!this.pipeline.send(m)) {
      this.deps.logger.warn("dropped internal raft message to remote since sending buffer is full", { "remote-peer-id": idHex(this.id) });
    }
  }

  stop(): void {
    this.pipeline.stop();
  }
}
