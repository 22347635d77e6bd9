/**
 * The etcdserverpb.Lease service. Keep-alives and time-to-live are answered by the leader without a
 * log entry (a follower forwards them to it).
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type {
  LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseServer, LeaseTimeToLiveResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { EtcdServer } from "../../server/etcd-server.js";
import type { Logger } from "../../pkg/logger.js";
import { requestContext, unary } from "./grpc-util.js";
import { toServiceError } from "./errors.js";

/** Keepalive requests one stream may have queued before it stops reading (back-pressure bound). */
const KEEPALIVE_QUEUE_MAX = 1024;

export function leaseService(server: EtcdServer, logger: Logger): LeaseServer {
  return {
    leaseGrant: unary(async (req, ctx) => {
      return server.fillHeader(await server.leaseGrant(Number(req.TTL), req.ID, ctx));
    }, logger),
    leaseRevoke: unary(async (req, ctx) => {
      await server.leaseRevoke(req.ID, ctx);
      return { header: server.header() };
    }, logger),
    leaseTimeToLive: unary(async (req, ctx): Promise<LeaseTimeToLiveResponse> => {
      const lease = await server.leaseTimeToLive(req.ID, req.keys, ctx);
      if (lease === undefined) {
        return { header: server.header(), ID: req.ID, TTL: -1n, grantedTTL: 0n, keys: [] };
      }
      return { header: server.header(), ID: req.ID, TTL: BigInt(lease.ttlSeconds), grantedTTL: BigInt(lease.grantedTtlSeconds), keys: lease.keys };
    }, logger),
    leaseLeases: unary(async () => {
      return { header: server.header(), leases: server.lessor.leases().map((l) => ({ ID: l.id })) };
    }, logger),
    leaseKeepAlive: (stream: ServerDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>) => {
      const ctx = requestContext(stream);
      let queued = 0;
      let chain = Promise.resolve();
      stream.on("data", (req: LeaseKeepAliveRequest) => {
        queued++;
        if (queued >= KEEPALIVE_QUEUE_MAX) stream.pause();
        chain = chain.then(async () => {
          try {
            const ttl = await server.leaseRenew(req.ID, ctx);
            if (!stream.cancelled) stream.write({ header: server.header(), ID: req.ID, TTL: BigInt(ttl) });
          } catch (err) {
            stream.emit("error", toServiceError(err));
          } finally {
            queued--;
            if (queued < KEEPALIVE_QUEUE_MAX) stream.resume();
          }
        });
      });
      stream.on("end", () => {
        void chain.then(() => stream.end());
      });
    },
  };
}
