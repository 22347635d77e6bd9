/** The etcdserverpb.KV service: request checks, then the member's read and write paths. */
import type { KVServer } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { EtcdServer } from "../../server/etcd-server.js";
import type { Logger } from "../../pkg/logger.js";
import { unary } from "./grpc-util.js";
import { checkDelete, checkPut, checkRange, checkTxn, checkWriteOverlaps } from "./validate.js";

export function kvService(server: EtcdServer, options: { maxTxnOps: number }, logger: Logger): KVServer {
  return {
    range: unary(async (req, ctx) => {
      checkRange(req);
      return server.range(req, ctx);
    }, logger),
    put: unary(async (req, ctx) => {
      checkPut(req);
      return server.fillHeader(await server.put(req, ctx));
    }, logger),
    deleteRange: unary(async (req, ctx) => {
      checkDelete(req);
      return server.fillHeader(await server.deleteRange(req, ctx));
    }, logger),
    txn: unary(async (req, ctx) => {
      checkTxn(req, options.maxTxnOps);
      checkWriteOverlaps(req.success);
      checkWriteOverlaps(req.failure);
      return server.fillHeader(await server.txn(req, ctx));
    }, logger),
    compact: unary(async (req, ctx) => {
      await server.compact(req, ctx);
      return { header: server.header() };
    }, logger),
  };
}

