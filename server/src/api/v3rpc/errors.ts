/**
 * The one table that turns domain errors into etcd's gRPC status codes and messages. Clients
 * (etcdctl, clientv3) match on the message text, so each is etcd's, byte for byte.
 */
import { status as Status, ServiceError, Metadata } from "@grpc/grpc-js";
import { ServerError, ServerErrorCode } from "../../server/errors.js";
import { ErrCompacted, ErrFutureRev } from "../../mvcc/errors.js";
import { ErrLeaseExists, ErrLeaseNotFound, ErrLeaseTTLTooLarge, ErrNotPrimary } from "../../lease/errors.js";
import { CompactedRevisionInTxn, FutureRevisionInTxn } from "../../server/apply/kv-ops.js";

type Row = [code: Status, message: string];

const SERVER_ERRORS: Record<ServerErrorCode, Row> = {
  EmptyKey: [Status.INVALID_ARGUMENT, "etcdserver: key is not provided"],
  KeyNotFound: [Status.INVALID_ARGUMENT, "etcdserver: key not found"],
  ValueProvided: [Status.INVALID_ARGUMENT, "etcdserver: value is provided"],
  LeaseProvided: [Status.INVALID_ARGUMENT, "etcdserver: lease is provided"],
  TooManyOps: [Status.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"],
  DuplicateKey: [Status.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"],
  RequestTooLarge: [Status.INVALID_ARGUMENT, "etcdserver: request is too large"],
  TooManyRequests: [Status.RESOURCE_EXHAUSTED, "etcdserver: too many requests"],
  NoSpace: [Status.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"],
  NoLeader: [Status.UNAVAILABLE, "etcdserver: no leader"],
  // raft's own error and Go's context error, which etcd 3.4 hands to grpc-go as they are.
  ProposalDropped: [Status.UNKNOWN, "raft proposal dropped"],
  ContextDeadline: [Status.UNKNOWN, "context deadline exceeded"],
  NotLeader: [Status.FAILED_PRECONDITION, "etcdserver: not leader"],
  LeaderChanged: [Status.UNAVAILABLE, "etcdserver: leader changed"],
  Stopped: [Status.UNAVAILABLE, "etcdserver: server stopped"],
  Timeout: [Status.UNAVAILABLE, "etcdserver: request timed out"],
  TimeoutDueToLeaderFail: [Status.UNAVAILABLE, "etcdserver: request timed out, possibly due to previous leader failure"],
  Unhealthy: [Status.UNAVAILABLE, "etcdserver: unhealthy cluster"],
  NotEnoughStartedMembers: [Status.FAILED_PRECONDITION, "etcdserver: re-configuration failed due to not enough started members"],
  Corrupt: [Status.DATA_LOSS, "etcdserver: corrupt cluster"],
  MemberNotFound: [Status.NOT_FOUND, "etcdserver: member not found"],
  MemberExist: [Status.FAILED_PRECONDITION, "etcdserver: member ID already exist"],
  PeerURLExist: [Status.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"],
  MemberBadURLs: [Status.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"],
  MemberNotLearner: [Status.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"],
  LearnerNotReady: [Status.FAILED_PRECONDITION, "etcdserver: can only promote a learner member which is in sync with leader"],
  TooManyLearners: [Status.FAILED_PRECONDITION, "etcdserver: too many learner members in cluster"],
  BadLeaderTransferee: [Status.FAILED_PRECONDITION, "etcdserver: bad leader transferee"],
  TimeoutLeaderTransfer: [Status.DEADLINE_EXCEEDED, "etcdserver: request timed out, leader transfer took too long"],
  NotSupportedForLearner: [Status.UNAVAILABLE, "etcdserver: rpc not supported for learner"],
  AuthNotEnabled: [Status.FAILED_PRECONDITION, "etcdserver: authentication is not enabled"],
  RootUserNotExist: [Status.FAILED_PRECONDITION, "etcdserver: root user does not exist"],
  RootRoleNotExist: [Status.FAILED_PRECONDITION, "etcdserver: root user does not have root role"],
  UserAlreadyExist: [Status.FAILED_PRECONDITION, "etcdserver: user name already exists"],
  UserEmpty: [Status.INVALID_ARGUMENT, "etcdserver: user name is empty"],
  UserNotFound: [Status.FAILED_PRECONDITION, "etcdserver: user name not found"],
  RoleAlreadyExist: [Status.FAILED_PRECONDITION, "etcdserver: role name already exists"],
  RoleNotFound: [Status.FAILED_PRECONDITION, "etcdserver: role name not found"],
  RoleEmpty: [Status.INVALID_ARGUMENT, "etcdserver: role name is empty"],
  AuthFailed: [Status.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password"],
  // etcd's gRPC table has no row for it: its own text, code Unknown.
  NoPasswordUser: [Status.UNKNOWN, "auth: authentication failed, password was given for no password user"],
  PermissionDenied: [Status.PERMISSION_DENIED, "etcdserver: permission denied"],
  RoleNotGranted: [Status.FAILED_PRECONDITION, "etcdserver: role is not granted to the user"],
  PermissionNotGranted: [Status.FAILED_PRECONDITION, "etcdserver: permission is not granted to the role"],
  InvalidAuthToken: [Status.UNAUTHENTICATED, "etcdserver: invalid auth token"],
  InvalidAuthMgmt: [Status.INVALID_ARGUMENT, "etcdserver: invalid auth management"],
  AuthOldRevision: [Status.INVALID_ARGUMENT, "etcdserver: revision of auth store is old"],
  Unimplemented: [Status.UNIMPLEMENTED, "etcdserver: not implemented"],
};

const COMPACTED: Row = [Status.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"];
const FUTURE_REV: Row = [Status.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"];

/** The status row for a domain error; unknown errors become Unknown with their own message. */
export function statusOf(err: unknown): Row {
  if (err instanceof ServerError) return SERVER_ERRORS[err.code];
  if (err instanceof ErrCompacted || err instanceof CompactedRevisionInTxn) return COMPACTED;
  if (err instanceof ErrFutureRev || err instanceof FutureRevisionInTxn) return FUTURE_REV;
  if (err instanceof ErrLeaseNotFound) return [Status.NOT_FOUND, "etcdserver: requested lease not found"];
  if (err instanceof ErrLeaseExists) return [Status.FAILED_PRECONDITION, "etcdserver: lease already exists"];
  if (err instanceof ErrLeaseTTLTooLarge) return [Status.OUT_OF_RANGE, "etcdserver: too large lease TTL"];
  if (err instanceof ErrNotPrimary) return SERVER_ERRORS.NotLeader;
  const e = err as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof e.code === "number" && typeof e.details === "string") return [e.code as Status, e.details];
  return [Status.UNKNOWN, String(e.message ?? err)];
}

/** A grpc-js ServiceError carrying etcd's status for `err`. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const [code, details] = statusOf(err);
  return { code, details, message: details, metadata: new Metadata() };
}
