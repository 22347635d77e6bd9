/**
 * Requests only the leader can answer, forwarded from a follower (etcd 3.4's LeaseRenew,
 * LeaseTimeToLive and PromoteMember on a follower): the follower waits for a leader, tries each of
 * the leader's peer URLs in turn, and keeps trying (a new leader, a URL that answers) until the
 * request timeout. The peer transport provides the client (LeaderClient); the member owns the loop.
 */
import type { LeaseTimeToLiveResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { sleep, type Clock } from "../pkg/clock.js";
import { ServerError, serverError } from "./errors.js";
import type { MemberRecord } from "./cluster/membership.js";

/**
 * The leader's peer endpoints as a client sees them (etcd's leasehttp and promoteMemberHTTP).
 * Each call targets one peer URL. Rejections that are the leader's final answer are ServerErrors
 * (or lease errors) the caller returns at once; any other rejection means "try the next URL".
 */
export interface LeaderClient {
  /**
   * POST <url>/leases: a keep-alive on the leader.
   * @returns the lease's new TTL in seconds.
   * @throws ErrLeaseNotFound when the leader has no such lease (final).
   */
  leaseRenew(peerUrl: string, id: bigint, timeoutMs: number): Promise<number>;
  /**
   * POST <url>/leases/internal: the lease's remaining and granted TTL (and keys).
   * @throws ErrLeaseNotFound when the leader has no such lease (final).
   */
  leaseTimeToLive(peerUrl: string, id: bigint, keys: boolean, timeoutMs: number): Promise<LeaseTimeToLiveResponse>;
  /**
   * POST <url>/members/promote/<id>: promotes a learner on the leader.
   * @returns the members after the promotion.
   * @throws ServerError LearnerNotReady, MemberNotFound, MemberNotLearner (final).
   */
  promoteMember(peerUrl: string, id: bigint, timeoutMs: number): Promise<MemberRecord[]>;
}

export interface LeaderForwardDeps {
  clock: Clock;
  /** The current leader's ID (0n when none is known). */
  leader(): bigint;
  /** A member's record (its peer URLs). */
  member(id: bigint): MemberRecord | undefined;
  /** Whether the member is stopping. */
  stopped(): boolean;
}

/** How often a follower looks again for a leader or a URL that answers (etcd waits on its leader channel). */
const RETRY_MS = 100;

/**
 * Runs `call` against the leader's peer URLs until one answers or `isFinal` says its error is
 * the leader's answer, within `timeoutMs`.
 * @throws the final error; ServerError Timeout at the deadline, Stopped when the member stops.
 */
export async function forwardToLeader<T>(
  deps: LeaderForwardDeps,
  timeoutMs: number,
  call: (peerUrl: string, remainingMs: number) => Promise<T>,
  isFinal: (err: unknown) => boolean,
): Promise<T> {
  const deadline = deps.clock.nowMs() + timeoutMs;
  for (;;) {
    if (deps.stopped()) throw serverError("Stopped");
    const remainingMs = deadline - deps.clock.nowMs();
    if (remainingMs <= 0) throw serverError("Timeout");
    const leader = deps.member(deps.leader());
    for (const url of leader?.peerUrls ?? []) {
      try {
        return await call(url, Math.max(1, deadline - deps.clock.nowMs()));
      } catch (err) {
        if (isFinal(err)) throw err;
      }
      if (deps.clock.nowMs() >= deadline) break;
    }
    await sleep(deps.clock, Math.min(RETRY_MS, Math.max(1, deadline - deps.clock.nowMs())));
  }
}

/** The promote errors a leader answers for good (etcd returns these early). */
export function isFinalPromoteError(err: unknown): boolean {
  return err instanceof ServerError && (err.code === "LearnerNotReady" || err.code === "MemberNotFound" || err.code === "MemberNotLearner");
}
