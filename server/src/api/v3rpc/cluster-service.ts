/** The etcdserverpb.Cluster service. Membership changes need the peer transport (not yet served). */
import type { ClusterServer, Member } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { EtcdServer } from "../../server/etcd-server.js";
import type { MemberRecord } from "../../server/cluster/membership.js";
import type { Logger } from "../../pkg/logger.js";
import { unary } from "./grpc-util.js";

export function toPbMember(m: MemberRecord): Member {
  return { ID: m.id, name: m.name, peerURLs: m.peerUrls, clientURLs: m.clientUrls, isLearner: m.isLearner };
}

export function clusterService(server: EtcdServer, logger: Logger): ClusterServer {
  return {
    memberList: unary(async () => ({
      header: server.clusterHeader(),
      members: server.membership.list().map(toPbMember),
    }), logger),
    memberAdd: unary(async (req, ctx) => {
      const { member, members } = await server.memberAdd(req.peerURLs, req.isLearner, ctx);
      return {
        header: server.clusterHeader(),
        member: { ID: member.id, name: "", peerURLs: member.peerUrls, clientURLs: [], isLearner: member.isLearner },
        members: members.map(toPbMember),
      };
    }, logger),
    memberRemove: unary(async (req, ctx) => ({
      header: server.clusterHeader(),
      members: (await server.memberRemove(req.ID, ctx)).map(toPbMember),
    }), logger),
    memberUpdate: unary(async (req, ctx) => ({
      header: server.clusterHeader(),
      members: (await server.memberUpdate(req.ID, req.peerURLs, ctx)).map(toPbMember),
    }), logger),
    memberPromote: unary(async (req, ctx) => ({
      header: server.clusterHeader(),
      members: (await server.memberPromote(req.ID, ctx)).map(toPbMember),
    }), logger),
  };
}
