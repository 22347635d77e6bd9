/**
 * The applier: what applying each kind of log request does to the member's state (etcd's
 * applierV3). Appliers are layered, each wrapping the next and passing through what it does not
 * change, with the backend applier (the real effects) innermost:
 *
 *   alarm layer (capped / corrupt)  →  auth layer (permission checks; users and roles)  →  backend applier
 *
 * Every method runs inside the apply step of one entry, with that entry's write session; an
 * error it throws is the proposer's answer (the entry still counts as applied). A method that
 * needs no backend read answers synchronously (`MaybeAsync`): a plain put is applied and answered
 * without a turn of the event loop or a promise.
 */
import type {
  ClusterMemberAttrSetRequest, ClusterVersionSetRequest, InternalRaftRequest,
} from "@etcd-ts/proto/etcdserverpb/raft_internal";
import type {
  AlarmMember, AlarmRequest, CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, LeaseCheckpointRequest,
  LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, PutRequest, PutResponse, TxnRequest, TxnResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { WriteSession } from "../store-port.js";
import type { ApplyResult } from "../proposer.js";

/** A result now, or once a read from the backend is done. */
export type MaybeAsync<T> = T | Promise<T>;

export interface Applier {
  /** Synchronous unless the put reads the key first (prev_kv, ignore_value, ignore_lease). */
  put(w: WriteSession, req: PutRequest): MaybeAsync<PutResponse>;
  deleteRange(w: WriteSession, req: DeleteRangeRequest): Promise<DeleteRangeResponse>;
  txn(w: WriteSession, req: TxnRequest): Promise<TxnResponse>;
  /** The logical compaction is part of `w`; the result's `physical` settles when files shrank. */
  compaction(w: WriteSession, req: CompactionRequest): ApplyResult;
  leaseGrant(w: WriteSession, req: LeaseGrantRequest): LeaseGrantResponse;
  leaseRevoke(w: WriteSession, req: LeaseRevokeRequest): void;
  leaseCheckpoint(w: WriteSession, req: LeaseCheckpointRequest): void;
  alarm(w: WriteSession, req: AlarmRequest): AlarmMember[];
  clusterMemberAttrSet(w: WriteSession, req: ClusterMemberAttrSetRequest): void;
  clusterVersionSet(w: WriteSession, req: ClusterVersionSetRequest): void;
  /**
   * One of the auth requests (Authenticate, enable and disable, users and roles: exactly one of
   * the request's auth fields is set); resolves with its response.
   */
  auth(w: WriteSession, req: InternalRaftRequest): Promise<unknown>;
}

/** Whether `req` is one of the auth requests (see Applier.auth). */
export function isAuthRequest(req: InternalRaftRequest): boolean {
  return (
    req.authenticate !== undefined || req.authEnable !== undefined || req.authDisable !== undefined || req.authUserAdd !== undefined ||
    req.authUserDelete !== undefined || req.authUserGet !== undefined || req.authUserChangePassword !== undefined ||
    req.authUserGrantRole !== undefined || req.authUserRevokeRole !== undefined || req.authUserList !== undefined ||
    req.authRoleList !== undefined || req.authRoleAdd !== undefined || req.authRoleDelete !== undefined || req.authRoleGet !== undefined ||
    req.authRoleGrantPermission !== undefined || req.authRoleRevokePermission !== undefined
  );
}

/** Passes every request to the next applier: the base of the layers that change only some. */
export class PassThroughApplier implements Applier {
  constructor(protected readonly next: Applier) {}
  put(w: WriteSession, req: PutRequest): MaybeAsync<PutResponse> {
    return this.next.put(w, req);
  }
  deleteRange(w: WriteSession, req: DeleteRangeRequest): Promise<DeleteRangeResponse> {
    return this.next.deleteRange(w, req);
  }
  txn(w: WriteSession, req: TxnRequest): Promise<TxnResponse> {
    return this.next.txn(w, req);
  }
  compaction(w: WriteSession, req: CompactionRequest): ApplyResult {
    return this.next.compaction(w, req);
  }
  leaseGrant(w: WriteSession, req: LeaseGrantRequest): LeaseGrantResponse {
    return this.next.leaseGrant(w, req);
  }
  leaseRevoke(w: WriteSession, req: LeaseRevokeRequest): void {
    this.next.leaseRevoke(w, req);
  }
  leaseCheckpoint(w: WriteSession, req: LeaseCheckpointRequest): void {
    this.next.leaseCheckpoint(w, req);
  }
  alarm(w: WriteSession, req: AlarmRequest): AlarmMember[] {
    return this.next.alarm(w, req);
  }
  clusterMemberAttrSet(w: WriteSession, req: ClusterMemberAttrSetRequest): void {
    this.next.clusterMemberAttrSet(w, req);
  }
  clusterVersionSet(w: WriteSession, req: ClusterVersionSetRequest): void {
    this.next.clusterVersionSet(w, req);
  }
  auth(w: WriteSession, req: InternalRaftRequest): Promise<unknown> {
    return this.next.auth(w, req);
  }
}

/**
 * Applies one decoded log request through `applier` (etcd's applyV3 dispatch). A request with no
 * field set is a no-op entry (the /health probe). Synchronous when the applier's method is; a
 * synchronous throw is the caller's to catch.
 */
export function applyRequest(applier: Applier, req: InternalRaftRequest, w: WriteSession): MaybeAsync<ApplyResult> {
  if (req.put) return valueOf(applier.put(w, req.put));
  if (req.deleteRange) return applier.deleteRange(w, req.deleteRange).then(asValue);
  if (req.txn) return applier.txn(w, req.txn).then(asValue);
  if (req.compaction) return applier.compaction(w, req.compaction);
  if (req.leaseGrant) return { value: applier.leaseGrant(w, req.leaseGrant) };
  if (req.leaseRevoke) return { value: applier.leaseRevoke(w, req.leaseRevoke) };
  if (req.leaseCheckpoint) return { value: applier.leaseCheckpoint(w, req.leaseCheckpoint) };
  if (req.alarm) return { value: applier.alarm(w, req.alarm) };
  if (req.clusterMemberAttrSet) return { value: applier.clusterMemberAttrSet(w, req.clusterMemberAttrSet) };
  if (req.clusterVersionSet) return { value: applier.clusterVersionSet(w, req.clusterVersionSet) };
  if (isAuthRequest(req)) return applier.auth(w, req).then(asValue);
  return { value: undefined };
}

function asValue(value: unknown): ApplyResult {
  return { value };
}

function valueOf(r: MaybeAsync<unknown>): MaybeAsync<ApplyResult> {
  return r instanceof Promise ? r.then(asValue) : { value: r };
}
