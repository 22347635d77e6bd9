/** Adapters between grpc-js handler shapes and async functions, with etcd's error translation. */
import type { handleUnaryCall, sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import { toServiceError } from "./errors.js";
import type { Logger } from "../../pkg/logger.js";

/** Wraps an async handler as a grpc-js unary handler; thrown errors become etcd's statuses. */
export function unary<Req, Res>(fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>, logger?: Logger): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    let p: Promise<Res>;
    try {
      p = fn(call.request, call);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (res) => callback(null, res),
      (err: unknown) => {
        const se = toServiceError(err);
        if (se.code === 2 /* UNKNOWN */) logger?.warn("request failed", { error: String(err), stack: (err as Error)?.stack });
        callback(se);
      },
    );
  };
}
