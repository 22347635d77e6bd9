/**
 * The alarm layer of the applier chain, as etcd switches it whenever an alarm is raised or
 * cleared (etcd's applierV3Capped and applierV3Corrupt):
 * - NOSPACE raised: requests that add data (puts, txns with puts, lease grants) fail with
 *   "database space exceeded"; deletes, reads, compaction and revokes still apply, so that space
 *   can be freed;
 * - CORRUPT raised: every request that reads or writes the key space fails with "corrupt cluster".
 */
import { AlarmType, type CompactionRequest, type DeleteRangeRequest, type DeleteRangeResponse, type LeaseGrantRequest, type LeaseGrantResponse, type LeaseRevokeRequest, type PutRequest, type PutResponse, type TxnRequest, type TxnResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { ApplyResult } from "../proposer.js";
import { txnCostBytes } from "../quota.js";
import { serverError } from "../errors.js";
import type { WriteSession } from "../store-port.js";
import { PassThroughApplier, type Applier, type MaybeAsync } from "./applier.js";

export class CappedApplier extends PassThroughApplier {
  override put(_w: WriteSession, _req: PutRequest): MaybeAsync<PutResponse> {
    throw serverError("NoSpace");
  }
  override txn(w: WriteSession, req: TxnRequest): Promise<TxnResponse> {
    if (txnCostBytes(req) > 0) return Promise.reject(serverError("NoSpace"));
    return this.next.txn(w, req);
  }
  override leaseGrant(_w: WriteSession, _req: LeaseGrantRequest): LeaseGrantResponse {
    throw serverError("NoSpace");
  }
}

export class CorruptApplier extends PassThroughApplier {
  override put(_w: WriteSession, _req: PutRequest): MaybeAsync<PutResponse> {
    throw serverError("Corrupt");
  }
  override deleteRange(_w: WriteSession, _req: DeleteRangeRequest): Promise<DeleteRangeResponse> {
    return Promise.reject(serverError("Corrupt"));
  }
  override txn(_w: WriteSession, _req: TxnRequest): Promise<TxnResponse> {
    return Promise.reject(serverError("Corrupt"));
  }
  override compaction(_w: WriteSession, _req: CompactionRequest): ApplyResult {
    throw serverError("Corrupt");
  }
  override leaseGrant(_w: WriteSession, _req: LeaseGrantRequest): LeaseGrantResponse {
    throw serverError("Corrupt");
  }
  override leaseRevoke(_w: WriteSession, _req: LeaseRevokeRequest): void {
    throw serverError("Corrupt");
  }
}

/** The chain for the raised alarms (etcd's restoreAlarms): corrupt over capped over `base`. */
export function applierForAlarms(base: Applier, isRaised: (alarm: AlarmType) => boolean): Applier {
  let applier = base;
  if (isRaised(AlarmType.NOSPACE)) applier = new CappedApplier(applier);
  if (isRaised(AlarmType.CORRUPT)) applier = new CorruptApplier(applier);
  return applier;
}
