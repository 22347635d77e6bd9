/**
 * The innermost applier (etcd's applierV3backend): the real effects of each request on the
 * revisioned store, the lessor, the membership and the alarms, all staged into the entry's write
 * session so that they reach the backend in one batch with the consistent index.
 */
import type { ClusterMemberAttrSetRequest, ClusterVersionSetRequest, InternalRaftRequest } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import type {
  AlarmMember, AlarmRequest, CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, LeaseCheckpointRequest,
  LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, PutRequest, PutResponse, TxnRequest, TxnResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import { ErrLeaseNotFound } from "../../lease/errors.js";
import type { Lessor } from "../../lease/lessor.js";
import type { AlarmStore } from "../alarms.js";
import type { Membership } from "../cluster/membership.js";
import type { ApplyResult } from "../proposer.js";
import type { StorePort, WriteSession } from "../store-port.js";
import type { Applier, MaybeAsync } from "./applier.js";
import { applyDeleteRange, applyPlainPut, applyPut, applyTxn, putReads, type KvWriter, type TxnChecks } from "./kv-ops.js";

export interface BackendApplierDeps {
  store: StorePort;
  lessor: Lessor;
  membership: Membership;
  alarms: AlarmStore;
}

export class BackendApplier implements Applier {
  constructor(private readonly deps: BackendApplierDeps) {}

  put(w: WriteSession, req: PutRequest): MaybeAsync<PutResponse> {
    const { lessor } = this.deps;
    if (req.lease !== 0n && lessor.lookup(req.lease) === undefined) throw new ErrLeaseNotFound();
    // Most puts read nothing: applied and answered synchronously, without a wrapper.
    if (!putReads(req)) {
      const prev = lessor.leaseOfKey(req.key);
      const resp = applyPlainPut(w, req);
      trackLease(lessor, req.key, req.lease, prev);
      return resp;
    }
    return applyPut(leaseTrackingWriter(w, lessor), req).then((r) => r.resp);
  }

  deleteRange(w: WriteSession, req: DeleteRangeRequest): Promise<DeleteRangeResponse> {
    return applyDeleteRange(leaseTrackingWriter(w, this.deps.lessor), req);
  }

  async txn(w: WriteSession, req: TxnRequest): Promise<TxnResponse> {
    const resp = await applyTxn(leaseTrackingWriter(w, this.deps.lessor), req, txnChecks(this.deps, w.beginRevision));
    resp.header = { clusterId: 0n, memberId: 0n, raftTerm: 0n, revision: BigInt(w.changed ? w.beginRevision + 1 : w.beginRevision) };
    return resp;
  }

  compaction(w: WriteSession, req: CompactionRequest): ApplyResult {
    const physical = this.deps.store.compact(w, Number(req.revision));
    physical.catch(() => undefined);
    return { value: undefined, physical };
  }

  leaseGrant(w: WriteSession, req: LeaseGrantRequest): LeaseGrantResponse {
    const l = this.deps.lessor.grant(req.ID, Number(req.TTL));
    const header = { clusterId: 0n, memberId: 0n, raftTerm: 0n, revision: BigInt(w.beginRevision) };
    return { header, ID: l.id, TTL: BigInt(l.ttlSeconds), error: "" };
  }

  leaseRevoke(w: WriteSession, req: LeaseRevokeRequest): void {
    for (const key of this.deps.lessor.revoke(req.ID)) w.deleteRange(key, undefined);
  }

  leaseCheckpoint(_w: WriteSession, req: LeaseCheckpointRequest): void {
    for (const cp of req.checkpoints) {
      try {
        this.deps.lessor.applyCheckpoint(cp.ID, Number(cp.remainingTTL));
      } catch {
        // the lease was revoked meanwhile
      }
    }
  }

  alarm(w: WriteSession, req: AlarmRequest): AlarmMember[] {
    return this.deps.alarms.apply(req, w);
  }

  clusterMemberAttrSet(w: WriteSession, req: ClusterMemberAttrSetRequest): void {
    this.deps.membership.setAttributes(req.memberID, req.name, req.clientUrls, w);
  }

  clusterVersionSet(w: WriteSession, req: ClusterVersionSetRequest): void {
    this.deps.membership.setClusterVersion(req.ver, w);
  }

  auth(_w: WriteSession, _req: InternalRaftRequest): Promise<unknown> {
    // The auth layer (auth/auth-applier.ts) owns the auth store and applies these itself.
    return Promise.reject(new Error("an auth request reached the backend applier without the auth layer"));
  }
}

/** What a txn's compares are checked against: the lessor and the store at `currentRevision`. */
export function txnChecks(deps: { store: StorePort; lessor: Lessor }, currentRevision: number): TxnChecks {
  return {
    leases: { exists: (id) => deps.lessor.lookup(id) !== undefined },
    currentRevision,
    compactRevision: deps.store.compactRevision,
  };
}

/** Detaches `key` from `lease`, which may already be gone (revoked in this same entry). */
function detach(lessor: Lessor, lease: bigint, key: Buffer): void {
  try {
    lessor.detach(lease, [key]);
  } catch {
    // the lease is already gone
  }
}

/** After a put of `key` with `lease` (0: none): the lessor's key sets follow the key's new lease. */
function trackLease(lessor: Lessor, key: Buffer, lease: bigint, prev: bigint = lessor.leaseOfKey(key)): void {
  if (prev === lease) return;
  if (prev !== 0n) detach(lessor, prev, key);
  if (lease !== 0n) lessor.attach(lease, [key]);
}

/** Wraps the apply session so that every put and delete keeps the lessor's key sets right. */
function leaseTrackingWriter(w: WriteSession, lessor: Lessor): KvWriter {
  return {
    range: (k, e, o) => w.range(k, e, o),
    put: (key, value, lease) => {
      const prev = lessor.leaseOfKey(key);
      w.put(key, value, lease);
      trackLease(lessor, key, lease, prev);
    },
    deleteRange: (key, end) => {
      const deleted = w.deleteRange(key, end);
      for (const k of deleted) {
        const lease = lessor.leaseOfKey(k);
        if (lease !== 0n) detach(lessor, lease, k);
      }
      return deleted;
    },
    get changed() {
      return w.changed;
    },
    get beginRevision() {
      return w.beginRevision;
    },
  };
}
