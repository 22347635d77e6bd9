/** The etcdserverpb.KV service: request checks, then the member's read and write paths. */
import type { KVServer } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { EtcdServer } from "../../server/etcd-server.js";
import type { Logger } from "../../pkg/logger.js";
import { unary } from "./grpc-util.js";
import { checkDelete, checkPut, checkRange, checkTxn, checkWriteOverlaps } from "./validate.js";

export function kvService(server: EtcdServer, options: { maxTxnOps: number }, logger: Logger): KVServer {
  const fillHeader = <R extends Parameters<EtcdServer["fillHeader"]>[0]>(resp: R): R => server.fillHeader(resp);
  return {
    range: unary(async (req, ctx) => {
      checkRange(req);
      return server.range(req, ctx);
    }, logger),
    // Not async: `unary` turns a thrown check into a rejection, and a put is every write's path.
    put: unary((req, ctx) => {
      checkPut(req);
      return server.put(req, ctx).then(fillHeader);
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

