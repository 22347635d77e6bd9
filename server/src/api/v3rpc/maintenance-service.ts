/** The etcdserverpb.Maintenance service: status, hashes, alarms, defragmentation, snapshots. */
import type { MaintenanceServer, StatusResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { EtcdServer } from "../../server/etcd-server.js";
import { ETCD_API_VERSION } from "../../server/etcd-server.js";
import { serverError } from "../../server/errors.js";
import { checkMaintenanceAdmin } from "./maintenance-auth.js";
import type { Logger } from "../../pkg/logger.js";
import { unary } from "./grpc-util.js";
import { snapshotHandler } from "./snapshot-stream.js";

export function maintenanceService(server: EtcdServer, logger: Logger): MaintenanceServer {
  return {
    status: unary(async (): Promise<StatusResponse> => {
      const view = server.store.metricsView?.();
      const [dbSize, inUse] = await Promise.all([server.store.sizeBytes(), view?.sizeInUseBytes()]);
      return {
        header: server.header(),
        version: ETCD_API_VERSION,
        dbSize: BigInt(dbSize),
        leader: server.leader,
        raftIndex: BigInt(server.committed),
        raftTerm: BigInt(server.term),
        raftAppliedIndex: BigInt(server.applied),
        errors: server.alarms.map((a) => `memberID:${a.memberId} alarm:${a.alarm === 1 ? "NOSPACE" : "CORRUPT"} `),
        dbSizeQuota: 0n,
        // LevelDB's estimate of its live data; never more than the files hold.
        dbSizeInUse: BigInt(Math.min(dbSize, inUse ?? dbSize)),
        isLearner: server.isLearner,
        storageVersion: "",
        downgradeInfo: undefined,
      };
    }, logger),
    // As etcd: hashes, defragmentation and snapshots need the root role while auth is on.
    hashKv: unary(async (req, ctx) => {
      await checkMaintenanceAdmin(server, ctx);
      const h = await server.store.hashKV(Number(req.revision));
      return {
        header: server.header(h.revision),
        hash: h.hash,
        compactRevision: BigInt(h.compactRevision),
        hashRevision: BigInt(h.revision),
      };
    }, logger),
    hash: unary(async (_req, ctx) => {
      await checkMaintenanceAdmin(server, ctx);
      const h = await server.store.hashKV(0);
      return { header: server.header(), hash: h.hash };
    }, logger),
    alarm: unary(async (req, ctx) => {
      // etcd answers alarm requests straight from the apply step: no header.
      return { header: undefined, alarms: await server.alarm(req, ctx) };
    }, logger),
    // etcd answers a defragment without a header.
    defragment: unary(async (_req, ctx) => {
      await checkMaintenanceAdmin(server, ctx);
      await server.defragment();
      return { header: undefined };
    }, logger),
    snapshot: snapshotHandler(server, logger),
    moveLeader: unary(async (req, ctx) => {
      await server.moveLeader(req.targetID, ctx);
      return { header: server.header() };
    }, logger),
    downgrade: unary(async () => {
      throw serverError("Unimplemented");
    }, logger),
  };
}
