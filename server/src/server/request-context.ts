/**
 * Who is asking, and over which connection: built once by the API layer for every client request
 * and passed into the member's client-facing methods, so that the checks a request meets on its
 * way (authentication, permissions) see the same facts wherever they are made.
 */
import type { RequestTrace } from "./request-trace.js";

export interface RequestContext {
  /** The client's address as `host:port` ("" when unknown, e.g. a unix socket). */
  readonly remoteAddress: string;
  /** The auth token the client sent (gRPC metadata `token`, or the gateway's Authorization). */
  readonly token?: string;
  /** The common name of the client's verified TLS certificate, when it presented one. */
  readonly certCommonName?: string;
  /** Present only while distributed tracing is on: the stages of this request are reported to it. */
  readonly trace?: RequestTrace;
}

/** The context of requests the member makes itself (publishing, lease expiry, compaction). */
export const INTERNAL_CONTEXT: RequestContext = Object.freeze({ remoteAddress: "" });
