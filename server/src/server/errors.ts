/**
 * Errors the member raises while validating, proposing and applying requests. Each carries a
 * stable code; the API layer translates codes (and the mvcc/lease layers' own error classes) to
 * etcd's gRPC status and message in one table (server/src/api/v3rpc/errors.ts).
 */
export type ServerErrorCode =
  | "EmptyKey"
  | "KeyNotFound"
  | "ValueProvided"
  | "LeaseProvided"
  | "TooManyOps"
  | "DuplicateKey"
  | "RequestTooLarge"
  | "TooManyRequests"
  | "NoSpace"
  | "NoLeader"
  | "ProposalDropped"
  | "ContextDeadline"
  | "NotLeader"
  | "LeaderChanged"
  | "Stopped"
  | "Timeout"
  | "TimeoutDueToLeaderFail"
  | "Unhealthy"
  | "NotEnoughStartedMembers"
  | "Corrupt"
  | "MemberNotFound"
  | "MemberExist"
  | "PeerURLExist"
  | "MemberBadURLs"
  | "MemberNotLearner"
  | "LearnerNotReady"
  | "TooManyLearners"
  | "BadLeaderTransferee"
  | "TimeoutLeaderTransfer"
  | "NotSupportedForLearner"
  | "AuthNotEnabled"
  | "RootUserNotExist"
  | "RootRoleNotExist"
  | "UserAlreadyExist"
  | "UserEmpty"
  | "UserNotFound"
  | "RoleAlreadyExist"
  | "RoleNotFound"
  | "RoleEmpty"
  | "AuthFailed"
  | "NoPasswordUser"
  | "PermissionDenied"
  | "RoleNotGranted"
  | "PermissionNotGranted"
  | "InvalidAuthToken"
  | "InvalidAuthMgmt"
  | "AuthOldRevision"
  | "Unimplemented";

export class ServerError extends Error {
  constructor(readonly code: ServerErrorCode, detail?: string) {
    super(detail ?? code);
    this.name = "ServerError";
  }
}

export function serverError(code: ServerErrorCode, detail?: string): ServerError {
  return new ServerError(code, detail);
}
