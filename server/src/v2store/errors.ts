/** etcd's v2 store errors: a numeric code, etcd's message, a cause (usually a path) and the store index. */

export const V2ErrorCode = {
  KeyNotFound: 100,
  TestFailed: 101,
  NotFile: 102,
  NotDir: 104,
  NodeExist: 105,
  RootReadOnly: 107,
  DirNotEmpty: 108,
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
};

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
}
