/** The etcdserverpb.KV service: request checks, then the member's read and write paths. */
import type { KVServer } from "../../gen/etcdserverpb/rpc.js";
import type { EtcdServer } from "../../server/etcd-server.js";
import type { Logger } from "../../pkg/logger.js";
import { unary } from "./grpc-util.js";
import { checkDelete, checkPut, checkRange, checkTxn, checkWriteOverlaps } from "./validate.js";

export function kvService(server: EtcdServer, options: { maxTxnOps: number }, logger: Logger): KVServer {
  return {
    range: unary(async (req) => {
      checkRange(req);
      return server.range(req);
    }, logger),
    put: unary(async (req) => {
      checkPut(req);
      return server.fillHeader(await server.put(req));
    }, logger),
    deleteRange: unary(async (req) => {
      checkDelete(req);
      return server.fillHeader(await server.deleteRange(req));
    }, logger),
    txn: unary(async (req) => {
      checkTxn(req, options.maxTxnOps);
      checkWriteOverlaps(req.success);
      checkWriteOverlaps(req.failure);
      return server.fillHeader(await server.txn(req));
    }, logger),
    compact: unary(async (req) => {
      await server.compact(req);
      return { header: server.header() };
    }, logger),
  };
}

