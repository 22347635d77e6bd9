/**
 * etcd's v3electionpb.Election service over the election recipe (concurrency.ts): Campaign waits
 * until the caller leads; Proclaim and Resign act for a LeaderKey Campaign answered with; Leader
 * reads the current leader; Observe streams the leader's value and each change. Errors are those
 * of etcd's in-process client: gRPC code Unknown with etcd's text ("election: not leader",
 * "election: no leader", ...).
 */
import type { ServerWritableStream } from "@grpc/grpc-js";
import type { ElectionServer, LeaderRequest, LeaderResponse } from "@etcd-ts/proto/v3electionpb/v3election";
import type { Logger } from "../../pkg/logger.js";
import { campaign, leader, observe, proclaim, resign } from "./concurrency.js";
import { toServiceError } from "./errors.js";
import { cancellableUnary, requestContext, unary } from "./grpc-util.js";
import { CallAbortedError, type LocalClient } from "./local-client.js";

export function electionService(client: LocalClient, logger: Logger): ElectionServer {
  return {
    campaign: cancellableUnary(async (req, ctx, signal) => campaign(client, req.name, req.lease, req.value, ctx, signal), logger),
    proclaim: unary(async (req, ctx) => ({ header: await proclaim(client, req.leader, req.value, ctx) }), logger),
    leader: unary(async (req, ctx) => leader(client, req.name, ctx), logger),
    resign: unary(async (req, ctx) => ({ header: await resign(client, req.leader, ctx) }), logger),
    observe: (call: ServerWritableStream<LeaderRequest, LeaderResponse>) => {
      const controller = new AbortController();
      const abort = (): void => controller.abort();
      call.on("cancelled", abort);
      call.on("close", abort);
      const run = async (): Promise<void> => {
        for await (const value of observe(client, call.request.name, requestContext(call), controller.signal)) {
          if (!call.write(value)) await drained(call, controller.signal);
        }
      };
      run().then(
        () => {
          if (!controller.signal.aborted) call.end();
        },
        (err: unknown) => {
          if (controller.signal.aborted || err instanceof CallAbortedError) return;
          logger.warn("election observe failed", { error: String(err) });
          call.emit("error", toServiceError(err));
        },
      ).finally(() => {
        call.off("cancelled", abort);
        call.off("close", abort);
      });
    },
  };
}

/** Resolves when the stream takes writes again, or the caller is gone. */
function drained(call: ServerWritableStream<LeaderRequest, LeaderResponse>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.on("drain", done);
    signal.addEventListener("abort", done);
  });
}
