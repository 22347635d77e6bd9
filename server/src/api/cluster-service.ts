/** The etcdserverpb.Cluster service. Membership changes need the peer transport (not yet served). */
import type { ClusterServer, Member } from "../gen/etcdserverpb/rpc.js";
import type { EtcdServer } from "../server/etcd-server.js";
import { serverError } from "../server/errors.js";
import type { MemberRecord } from "../server/membership.js";
import type { Logger } from "../pkg/logger.js";
import { unary } from "./grpc-util.js";

export function toPbMember(m: MemberRecord): Member {
  return { ID: m.id, name: m.name, peerURLs: m.peerUrls, clientURLs: m.clientUrls, isLearner: m.isLearner };
}

export function clusterService(server: EtcdServer, logger: Logger): ClusterServer {
  const unsupported = async (): Promise<never> => {
    throw serverError("Unimplemented");
  };
  return {
    memberList: unary(async () => ({
      header: server.clusterHeader(),
      members: server.membership.list().map(toPbMember),
    }), logger),
    memberAdd: unary(unsupported, logger),
    memberRemove: unary(unsupported, logger),
    memberUpdate: unary(unsupported, logger),
    memberPromote: unary(unsupported, logger),
  };
}
