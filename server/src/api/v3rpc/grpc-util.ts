/** Adapters between grpc-js handler shapes and async functions, with etcd's error translation. */
import type { handleUnaryCall, Metadata, sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import { toServiceError } from "./errors.js";
import type { Logger } from "../../pkg/logger.js";
import type { RequestContext } from "../../server/request-context.js";
import type { RequestTrace } from "../../server/request-trace.js";
import { takeUnaryCells } from "./grpc-metrics.js";

/**
 * The property under which a handler wrapper (the service registry's `wrapService`: tracing)
 * leaves the call's RequestTrace for `requestContext`; absent on every call while tracing is off.
 */
export const CALL_TRACE: unique symbol = Symbol("etcd-ts.call-trace");

/** A call as a handler wrapper may mark it. */
export interface TraceableCall {
  [CALL_TRACE]?: RequestTrace;
}

/**
 * Who is asking, from a call (gRPC, or the gateway's stand-in): the peer address, the auth token
 * from the `token` metadata (as etcd's clients send it) or else `authorization` (the gateway
 * passes the Authorization header on as it), the common name of the client's verified TLS certificate (gRPC calls only: as etcd, a
 * gateway request's certificate names no user), and the call's trace, if a wrapper traces it.
 */
export function requestContext(call: { getPeer(): string; metadata: Metadata; getAuthContext?(): { sslPeerCertificate?: { subject?: { CN?: string | string[] } } } }): RequestContext {
  // etcd's AuthInfoFromCtx: the `token` metadata, else `authorization` (the gateway's, or any client's).
  const token = call.metadata.get("token")[0] ?? call.metadata.get("authorization")[0];
  const ctx: { -readonly [K in keyof RequestContext]: RequestContext[K] } = { remoteAddress: call.getPeer() };
  if (token !== undefined) ctx.token = String(token);
  const cn = call.getAuthContext?.().sslPeerCertificate?.subject?.CN;
  if (cn !== undefined) ctx.certCommonName = Array.isArray(cn) ? (cn[0] ?? "") : cn;
  const trace = (call as TraceableCall)[CALL_TRACE];
  if (trace !== undefined) ctx.trace = trace;
  return ctx;
}

/**
 * Wraps an async handler as a grpc-js unary handler; thrown errors become etcd's statuses. The
 * handler gets the request and its context.
 */
export function unary<Req, Res>(fn: (req: Req, ctx: RequestContext) => Promise<Res>, logger?: Logger): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    // The call's metric cells, when the registry counts it (grpc-metrics.ts).
    const cells = takeUnaryCells();
    const startedAt = cells === undefined ? 0 : cells.startTime();
    let p: Promise<Res>;
    try {
      p = fn(call.request, requestContext(call));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (res) => {
        cells?.finishUnary(0, startedAt);
        callback(null, res);
      },
      (err: unknown) => {
        const se = toServiceError(err);
        cells?.finishUnary(se.code ?? 2, startedAt);
        // Unknown from an error that carries no status of its own is a fault worth a log line;
        // an error that chose code Unknown (etcd's in-process client's answers) is not.
        if (se.code === 2 /* UNKNOWN */ && typeof (err as { details?: unknown })?.details !== "string") {
          logger?.warn("request failed", { error: String(err), stack: (err as Error)?.stack });
        }
        callback(se);
      },
    );
  };
}

/**
 * Like `unary`, for handlers that wait: the handler also gets a signal that aborts when the
 * caller goes away (cancels, or its deadline passes; the gateway's client closes).
 */
export function cancellableUnary<Req, Res>(
  fn: (req: Req, ctx: RequestContext, signal: AbortSignal) => Promise<Res>,
  logger?: Logger,
): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const controller = new AbortController();
    const abort = (): void => controller.abort();
    call.on("cancelled", abort);
    const inner = unary<Req, Res>((req, ctx) => fn(req, ctx, controller.signal), logger);
    inner(call, (err, value) => {
      call.off("cancelled", abort);
      callback(err, value);
    });
  };
}
