/**
 * etcd's v3lockpb.Lock service: Lock waits for the named lock with the caller's lease (see
 * concurrency.ts for the recipe and key layout); Unlock deletes the key Lock answered with. Errors
 * are those of etcd's in-process client: gRPC code Unknown with etcd's text.
 */
import type { LockServer } from "@etcd-ts/proto/v3lockpb/v3lock";
import type { Logger } from "../../pkg/logger.js";
import { lock } from "./concurrency.js";
import { cancellableUnary, unary } from "./grpc-util.js";
import type { LocalClient } from "./local-client.js";

export function lockService(client: LocalClient, logger: Logger): LockServer {
  return {
    lock: cancellableUnary(async (req, ctx, signal) => lock(client, req.name, req.lease, ctx, signal), logger),
    unlock: unary(async (req, ctx) => ({ header: (await client.delete(req.key, ctx)).header }), logger),
  };
}
