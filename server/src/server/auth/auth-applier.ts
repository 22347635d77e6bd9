/**
 * The auth layer of the applier chain (etcd's authApplierV3), built for one entry: it acts as the
 * user the entry's header names, at the auth revision the header carries, and
 *
 * - checks permissions before the request reaches the backend applier, exactly where etcd 3.4
 *   does (the members of a mixed cluster must decide alike): put = write on the key, write on
 *   every key of the lease it attaches, read on the key with prev_kv; delete range = write on the
 *   range, read with prev_kv; txn = read on every compare's range, and each top-level operation of
 *   both branches as itself (a nested txn's operations are not looked into at apply: etcd 3.4
 *   does not, and the member checks them before proposing); lease revoke = write on every key of
 *   the lease; compaction, lease grants and checkpoints, alarms and membership pass unchecked;
 * - applies the auth requests to the auth store: all but Authenticate, UserGet and RoleGet need
 *   the root role (while auth is on); a user may get itself, and a role it has.
 */
import type { InternalRaftRequest } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import type {
  AuthRoleGetResponse, AuthUserGetResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseRevokeRequest, PutRequest, PutResponse,
  RequestOp, TxnRequest, TxnResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { Lessor } from "../../lease/lessor.js";
import type { WriteSession } from "../store-port.js";
import { PassThroughApplier, type Applier, type MaybeAsync } from "../apply/applier.js";
import type { AuthInfo, AuthStore } from "./auth-store.js";

export interface AuthApplierDeps {
  auth: AuthStore;
  lessor: Lessor;
}

export class AuthApplier extends PassThroughApplier {
  /**
   * @param ai who the entry acts as (its header's username and auth revision)
   * @param index the entry's raft index (simple tokens carry it)
   */
  constructor(next: Applier, private readonly deps: AuthApplierDeps, private readonly ai: AuthInfo, private readonly index: number) {
    super(next);
  }

  override put(w: WriteSession, req: PutRequest): MaybeAsync<PutResponse> {
    const { auth } = this.deps;
    auth.checkWrite(this.ai, req.key);
    this.checkLeasePuts(req.lease);
    if (req.prevKv) auth.checkRange(this.ai, req.key);
    return this.next.put(w, req);
  }

  override deleteRange(w: WriteSession, req: DeleteRangeRequest): Promise<DeleteRangeResponse> {
    const { auth } = this.deps;
    auth.checkWrite(this.ai, req.key, req.rangeEnd);
    if (req.prevKv) auth.checkRange(this.ai, req.key, req.rangeEnd);
    return this.next.deleteRange(w, req);
  }

  override txn(w: WriteSession, req: TxnRequest): Promise<TxnResponse> {
    checkTxnPermitted(this.deps.auth, this.ai, req, false);
    return this.next.txn(w, req);
  }

  override leaseRevoke(w: WriteSession, req: LeaseRevokeRequest): void {
    this.checkLeasePuts(req.ID);
    this.next.leaseRevoke(w, req);
  }

  private checkLeasePuts(id: bigint): void {
    if (id === 0n) return;
    const lease = this.deps.lessor.lookup(id);
    if (lease === undefined) return;
    for (const key of lease.keys()) this.deps.auth.checkWrite(this.ai, key);
  }

  override async auth(w: WriteSession, req: InternalRaftRequest): Promise<unknown> {
    const { auth } = this.deps;
    if (needsAdmin(req)) auth.checkAdmin(this.ai);
    if (req.authenticate) return { header: undefined, token: await auth.authenticate(req.authenticate.name, req.authenticate.simpleToken, this.index) };
    if (req.authEnable) return auth.enable(w);
    if (req.authDisable) return auth.disable(w);
    if (req.authUserAdd) return auth.userAdd(w, req.authUserAdd);
    if (req.authUserDelete) return auth.userDelete(w, req.authUserDelete.name);
    if (req.authUserChangePassword) return auth.userChangePassword(w, req.authUserChangePassword);
    if (req.authUserGrantRole) return auth.userGrantRole(w, req.authUserGrantRole);
    if (req.authUserRevokeRole) return auth.userRevokeRole(w, req.authUserRevokeRole);
    if (req.authRoleAdd) return auth.roleAdd(w, req.authRoleAdd.name);
    if (req.authRoleDelete) return auth.roleDelete(w, req.authRoleDelete.role);
    if (req.authRoleGrantPermission) return auth.roleGrantPermission(w, req.authRoleGrantPermission);
    if (req.authRoleRevokePermission) return auth.roleRevokePermission(w, req.authRoleRevokePermission);
    if (req.authUserList) return { header: undefined, users: auth.userNames() };
    if (req.authRoleList) return { header: undefined, roles: auth.roleNames() };
    if (req.authUserGet) {
      const name = req.authUserGet.name;
      try {
        auth.checkAdmin(this.ai);
      } catch (err) {
        if (name !== this.ai.username) throw err;
      }
      return { header: undefined, roles: auth.userRoles(name) } satisfies AuthUserGetResponse;
    }
    if (req.authRoleGet) {
      const role = req.authRoleGet.role;
      try {
        auth.checkAdmin(this.ai);
      } catch (err) {
        if (!auth.hasRole(this.ai.username, role)) throw err;
      }
      return { header: undefined, perm: auth.rolePermissions(role) } satisfies AuthRoleGetResponse;
    }
    return this.next.auth(w, req);
  }
}

/** The requests only root may make (while auth is on). */
function needsAdmin(req: InternalRaftRequest): boolean {
  return (
    req.authEnable !== undefined || req.authDisable !== undefined || req.authUserAdd !== undefined || req.authUserDelete !== undefined ||
    req.authUserChangePassword !== undefined || req.authUserGrantRole !== undefined || req.authUserRevokeRole !== undefined ||
    req.authRoleAdd !== undefined || req.authRoleGrantPermission !== undefined || req.authRoleRevokePermission !== undefined ||
    req.authRoleDelete !== undefined || req.authUserList !== undefined || req.authRoleList !== undefined
  );
}

/**
 * A txn's permissions (etcd's checkTxnAuth): read on each compare's range, then each operation of
 * the success and the failure branch. `nested`: also the operations of nested txns (the member's
 * check before proposing; apply leaves them out, as etcd 3.4 does).
 * @throws ServerError UserEmpty, AuthOldRevision, PermissionDenied
 */
export function checkTxnPermitted(auth: AuthStore, ai: AuthInfo, req: TxnRequest, nested: boolean): void {
  for (const c of req.compare) auth.checkRange(ai, c.key, c.rangeEnd);
  checkOps(auth, ai, req.success, nested);
  checkOps(auth, ai, req.failure, nested);
}

function checkOps(auth: AuthStore, ai: AuthInfo, ops: RequestOp[], nested: boolean): void {
  for (const op of ops) {
    if (op.requestRange) auth.checkRange(ai, op.requestRange.key, op.requestRange.rangeEnd);
    else if (op.requestPut) auth.checkWrite(ai, op.requestPut.key);
    else if (op.requestDeleteRange) {
      const d = op.requestDeleteRange;
      if (d.prevKv) auth.checkRange(ai, d.key, d.rangeEnd);
      auth.checkWrite(ai, d.key, d.rangeEnd);
    } else if (op.requestTxn && nested) checkTxnPermitted(auth, ai, op.requestTxn, true);
  }
}
