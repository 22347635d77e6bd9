/**
 * The pipeline to one peer (etcd's pipeline): each message in its own `POST /raft` (protobuf
 * body, answered 204), at most 4 in flight, at most 64 waiting. The fallback path when no
 * stream to the peer is up, and the only path to a remote (a member this one does not know yet).
 * A failed post marks the peer inactive, moves its URL picker on and tells raft the peer is
 * unreachable; a post answered 403 (this member was removed from the cluster) also reports that
 * to the member (PeerHandler.reportRemoved).
 */
import type { Message, NodeId } from "../raft/types.js";
import type { Logger } from "../pkg/logger.js";
import type { PeerHandler } from "../server/transport-port.js";
import { encodeMessage } from "./message-codec.js";
import type { PeerHttpClient } from "./peer-http-client.js";
import { ERR_CLUSTER_ID_MISMATCH, ERR_INCOMPATIBLE_VERSION, idHex, RemovedFromClusterError } from "./peer-protocol.js";
import type { PeerStatus } from "./peer-status.js";
import type { UrlPicker } from "./url-picker.js";

export const PIPELINE_CONNECTIONS = 4;
export const PIPELINE_BUFFER = 64;
/** A post not answered in this time counts as failed. */
const POST_TIMEOUT_MS = 5000;

export interface PipelineDeps {
  picker: UrlPicker;
  status: PeerStatus;
  client: PeerHttpClient;
  /** The headers of every request this member sends. */
  headers: Record<string, string>;
  handler: Pick<PeerHandler, "reportUnreachable" | "reportRemoved">;
  logger: Logger;
}

export class Pipeline {
  private readonly waiting: Message[] = [];
  private inFlight = 0;
  private stopped = false;

  constructor(private readonly peerId: NodeId, private readonly deps: PipelineDeps) {}

  /** Queues `m`; false (dropped) when 64 already wait or the pipeline is stopped. */
  send(m: Message): boolean {
    if (this.stopped || this.waiting.length >= PIPELINE_BUFFER) return false;
    this.waiting.push(m);
    this.pump();
    return true;
  }

  stop(): void {
    this.stopped = true;
    this.waiting.length = 0;
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < PIPELINE_CONNECTIONS && this.waiting.length > 0) {
      const m = this.waiting.shift()!;
      this.inFlight++;
      void this.post(m).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async post(m: Message): Promise<void> {
    const url = this.deps.picker.pick();
    const counters = this.deps.status.counters;
    try {
      const body = encodeMessage(m);
      const res = await this.deps.client.request(
        url.replace(/\/+$/, "") + "/raft",
        "POST",
        { ...this.deps.headers, "Content-Type": "application/protobuf" },
        body,
        POST_TIMEOUT_MS,
      );
      counters.sentBytes += body.length;
      if (res.status === 403) throw new RemovedFromClusterError();
      const problem = postProblem(res.status, res.body.toString());
      if (problem !== undefined) throw new Error(problem);
      this.deps.status.activate();
    } catch (err) {
      if (this.stopped) return;
      counters.sentFailures++;
      this.deps.picker.unreachable(url);
      this.deps.status.deactivate(`failed to post to ${url}: ${(err as Error).message}`);
      this.deps.handler.reportUnreachable(this.peerId);
      if (err instanceof RemovedFromClusterError) this.deps.handler.reportRemoved();
      this.deps.logger.debug("pipeline post failed", { "peer-id": idHex(this.peerId), error: (err as Error).message });
    }
  }
}

/** What is wrong with a post's answer (etcd's checkPostResponse), undefined for 204. */
export function postProblem(status: number, body: string): string | undefined {
  switch (status) {
    case 204:
      return undefined;
    case 412: {
      const text = body.replace(/\n$/, "");
      if (text === ERR_INCOMPATIBLE_VERSION || text === ERR_CLUSTER_ID_MISMATCH) return text;
      return `unhandled error ${JSON.stringify(body)} when precondition failed`;
    }
    case 403:
      return "the member has been permanently removed from the cluster";
    default:
      return `unexpected http status ${status}`;
  }
}
