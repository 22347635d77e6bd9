/**
 * Corruption checks across members (etcd 3.4's corrupt.go): every member's key-value store must
 * hash the same at the same revision (HashKV).
 *
 *  - initial check (--experimental-initial-corrupt-check): before a restarted member starts, it
 *    hashes its store at its current revision and asks every peer for its hash at that revision;
 *    a peer that answers a different hash at the same compact revision is a mismatch, and the
 *    member refuses to start ("<id> found data inconsistency with peers"). Peers that are
 *    unreachable, behind (future revision) or ahead (compacted) are logged, not counted.
 *  - periodic check (--experimental-corrupt-check-time): the leader hashes, asks its peers at
 *    that revision, confirms with a linearizable read and hashes again; its own hash changing at
 *    the same revision, a follower ahead of it (revision or compact revision), or a follower with
 *    another hash at the same compact revision raises the CORRUPT alarm (through the log, so
 *    every member refuses writes).
 *
 * Peers answer on their peer port (GET /members/hashkv with a JSON HashKVRequest body); the
 * transport provides the client (PeerHashClient).
 */
import { ErrCompacted, ErrFutureRev } from "../mvcc/errors.js";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import type { MemberRecord } from "./cluster/membership.js";

/** A member's hash of its store at a revision. */
export interface PeerHash {
  /** The revision hashed (the header's revision). */
  revision: number;
  hash: number;
  compactRevision: number;
}

/** Why a peer could not hash at the revision asked for. */
export type PeerHashRefusal = "Compacted" | "FutureRevision";

export class PeerHashRefusedError extends Error {
  constructor(readonly code: PeerHashRefusal, detail: string) {
    super(detail);
    this.name = "PeerHashRefusedError";
  }
}

/** Asks one peer URL for its HashKV (etcd's getPeerHashKVHTTP). */
export interface PeerHashClient {
  /**
   * @throws PeerHashRefusedError when the peer is compacted past `revision` or behind it; any
   *   other error means the URL did not answer.
   */
  hashKV(peerUrl: string, revision: number, timeoutMs: number): Promise<PeerHash>;
}

export interface CorruptCheckOptions {
  memberId: bigint;
  /** Time between the leader's checks; 0 disables them (--experimental-corrupt-check-time). */
  checkIntervalMs: number;
  /** Per peer URL (etcd's request timeout). */
  requestTimeoutMs: number;
}

export interface CorruptCheckDeps {
  /** This member's HashKV at `revision` (0: the current revision). */
  hashKV(revision: number): Promise<PeerHash>;
  members(): MemberRecord[];
  isLeader(): boolean;
  /** Resolves once a read served now would be linearizable. */
  linearizableReadNotify(): Promise<void>;
  /** Proposes the CORRUPT alarm (for the whole cluster). */
  raiseCorrupt(): Promise<void>;
  client: PeerHashClient;
  clock: Clock;
  logger: Logger;
}

interface PeerAnswer {
  member: MemberRecord;
  hash?: PeerHash;
  error?: unknown;
}

export class CorruptionChecker {
  private timer: TimerHandle | undefined;
  private stopped = false;

  constructor(private readonly options: CorruptCheckOptions, private readonly deps: CorruptCheckDeps) {}

  /**
   * The start-up check of a restarted member.
   * @throws Error "<id> found data inconsistency with peers" on a mismatch.
   */
  async initialCheck(): Promise<void> {
    const { logger } = this.deps;
    const local = this.idHex(this.options.memberId);
    logger.info("starting initial corruption check", { "local-member-id": local, timeout: `${this.options.requestTimeoutMs}ms` });
    const mine = await this.deps.hashKV(0);
    let mismatches = 0;
    for (const answer of await this.askPeers(mine.revision)) {
      const remote = this.idHex(answer.member.id);
      if (answer.hash !== undefined) {
        if (answer.hash.hash === mine.hash) continue;
        const fields = {
          "local-member-id": local, "local-member-revision": mine.revision, "local-member-compact-revision": mine.compactRevision,
          "local-member-hash": mine.hash, "remote-peer-id": remote, "remote-peer-revision": answer.hash.revision,
          "remote-peer-compact-revision": answer.hash.compactRevision, "remote-peer-hash": answer.hash.hash,
        };
        if (answer.hash.compactRevision === mine.compactRevision) {
          logger.warn("found different hash values from remote peer", fields);
          mismatches++;
        } else {
          logger.warn("found different compact revision values from remote peer", fields);
        }
      } else if (answer.error instanceof PeerHashRefusedError) {
        const why = answer.error.code === "FutureRevision" ? "cannot fetch hash from slow remote peer" : "cannot fetch hash from remote peer; local member is behind";
        logger.warn(why, { "local-member-id": local, "local-member-revision": mine.revision, "remote-peer-id": remote });
      }
    }
    if (mismatches > 0) throw new Error(`${local} found data inconsistency with peers`);
    logger.info("initial corruption checking passed; no corruption", { "local-member-id": local });
  }

  /** Starts the leader's periodic checks (none when the interval is 0). */
  start(): void {
    if (this.options.checkIntervalMs <= 0) return;
    this.deps.logger.info("enabled corruption checking", { "local-member-id": this.idHex(this.options.memberId), interval: `${this.options.checkIntervalMs}ms` });
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One check by the leader (etcd's checkHashKV). Returns whether it raised the alarm. */
  async check(): Promise<boolean> {
    const first = await this.deps.hashKV(0);
    const answers = await this.askPeers(first.revision);
    await this.deps.linearizableReadNotify();
    const second = await this.deps.hashKV(0);
    const { logger } = this.deps;
    let corrupt = false;
    if (second.hash !== first.hash && second.revision === first.revision && second.compactRevision === first.compactRevision) {
      logger.warn("found hash mismatch", { "revision-1": first.revision, "hash-1": first.hash, "revision-2": second.revision, "hash-2": second.hash });
      corrupt = true;
    }
    let checked = 0;
    for (const answer of answers) {
      const peer = answer.hash;
      if (peer === undefined) continue;
      checked++;
      const follower = this.idHex(answer.member.id);
      if (peer.revision > second.revision) {
        logger.warn("revision from follower must be less than or equal to leader's", { "leader-revision": second.revision, "follower-revision": peer.revision, "follower-peer-id": follower });
        corrupt = true;
      }
      if (peer.compactRevision > second.compactRevision) {
        logger.warn("compact revision from follower must be less than or equal to leader's", { "leader-compact-revision": second.compactRevision, "follower-compact-revision": peer.compactRevision, "follower-peer-id": follower });
        corrupt = true;
      }
      if (peer.compactRevision === first.compactRevision && peer.hash !== first.hash) {
        logger.warn("same compact revision then hashes must match", { "leader-compact-revision": second.compactRevision, "leader-hash": first.hash, "follower-compact-revision": peer.compactRevision, "follower-hash": peer.hash, "follower-peer-id": follower });
        corrupt = true;
      }
    }
    logger.info("finished peer corruption check", { "number-of-peers-checked": checked });
    if (corrupt) await this.deps.raiseCorrupt();
    return corrupt;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => {
      const run = this.deps.isLeader() ? this.check() : Promise.resolve(false);
      void run
        .catch((err) => this.deps.logger.warn("failed to check hash KV", { error: String(err) }))
        .finally(() => this.schedule());
    }, this.options.checkIntervalMs);
  }

  /** Every other member's hash at `revision`, trying each of its peer URLs until one answers. */
  private async askPeers(revision: number): Promise<PeerAnswer[]> {
    const answers: PeerAnswer[] = [];
    for (const member of this.deps.members()) {
      if (member.id === this.options.memberId || member.peerUrls.length === 0) continue;
      let lastError: unknown;
      let hash: PeerHash | undefined;
      for (const url of member.peerUrls) {
        try {
          hash = await this.deps.client.hashKV(url, revision, this.options.requestTimeoutMs);
          break;
        } catch (err) {
          lastError = err;
          this.deps.logger.warn("failed hash kv request", { "requested-revision": revision, "remote-peer-endpoint": url, error: String(err) });
        }
      }
      answers.push(hash !== undefined ? { member, hash } : { member, error: lastError });
    }
    return answers;
  }

  private idHex(id: bigint): string {
    return id.toString(16);
  }
}

/** What a member answers a peer's GET /members/hashkv: its hash, or the refusal etcd words. */
export async function answerPeerHashKV(
  hashKV: (revision: number) => Promise<PeerHash>,
  revision: number,
): Promise<{ status: 200; hash: PeerHash } | { status: 400; text: string }> {
  try {
    return { status: 200, hash: await hashKV(revision) };
  } catch (err) {
    if (err instanceof ErrCompacted) return { status: 400, text: "mvcc: required revision has been compacted" };
    if (err instanceof ErrFutureRev) return { status: 400, text: "mvcc: required revision is a future revision" };
    throw err;
  }
}
