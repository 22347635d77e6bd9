/**
 * What the member tells a traced request about its way through the member. The API layer
 * attaches one to a request's RequestContext only when tracing is on (--experimental-enable-
 * distributed-tracing); with tracing off the field is absent and every call site costs one
 * `undefined` check. Implementations must be cheap and must never throw.
 */
export interface RequestTrace {
  /**
   * The request's entry goes to raft as `data` (the same bytes, by reference, reach the WAL and
   * the apply path, where the tracer recognises them).
   */
  proposing(data: Uint8Array): void;
  /** A stage the caller waits for (e.g. "read index"): timed from now until `work` settles. */
  stage<T>(name: string, work: Promise<T>): Promise<T>;
}
