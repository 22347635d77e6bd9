/** etcd's v2 store errors: a numeric code, etcd's message, a cause (usually a path) and the store index. */

export const V2ErrorCode = {
  KeyNotFound: 100,
  TestFailed: 101,
  NotFile: 102,
  NotDir: 104,
  NodeExist: 105,
  RootReadOnly: 107,
  DirNotEmpty: 108,
  Unauthorized: 110,
  PrevValueRequired: 201,
  TtlNaN: 202,
  IndexNaN: 203,
  InvalidField: 209,
  InvalidForm: 210,
  RefreshValue: 211,
  RefreshTtlRequired: 212,
  RaftInternal: 300,
  LeaderElect: 301,
  WatcherCleared: 400,
  EventIndexCleared: 401,
} as const;

export type V2ErrorCode = (typeof V2ErrorCode)[keyof typeof V2ErrorCode];

const MESSAGES: Record<V2ErrorCode, string> = {
  100: "Key not found",
  101: "Compare failed",
  102: "Not a file",
  104: "Not a directory",
  105: "Key already exists",
  107: "Root is read only",
  108: "Directory not empty",
  110: "The request requires user authentication",
  201: "PrevValue is Required in POST form",
  202: "The given TTL in POST form is not a number",
  203: "The given index in POST form is not a number",
  209: "Invalid field",
  210: "Invalid POST form",
  211: "Value provided on refresh",
  212: "A TTL must be provided on refresh",
  300: "Raft Internal Error",
  301: "During Leader Election",
  400: "watcher is cleared due to etcd recovery",
  401: "The event in requested index is outdated and cleared",
};

/** The HTTP status etcd answers an error code with (400 for codes not listed). */
const STATUS: Partial<Record<V2ErrorCode, number>> = { 100: 404, 102: 403, 108: 403, 110: 401, 101: 412, 105: 412, 300: 500, 301: 500 };

/** A v2 store operation failed; the store is unchanged. `index` is the store index at the time. */
export class V2Error extends Error {
  constructor(
    readonly errorCode: V2ErrorCode,
    readonly detail: string,
    readonly index: number,
  ) {
    super(`${errorCode}: ${MESSAGES[errorCode]} (${detail}) [${index}]`);
  }

  /** etcd's message for the code ("Key not found"). */
  get errorMessage(): string {
    return MESSAGES[this.errorCode];
  }

  /** The HTTP status for this error. */
  get httpStatus(): number {
    return STATUS[this.errorCode] ?? 400;
  }
}
