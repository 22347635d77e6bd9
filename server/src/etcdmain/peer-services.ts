/**
 * The member as the peer port sees it (rafthttp's PeerServices), over EtcdServer: membership,
 * promotion, and the lessor for the lease requests followers forward to the leader.
 */
import type { EtcdServer } from "../server/etcd-server.js";
import { ServerError } from "../server/errors.js";
import { PeerServiceError, type PeerMember, type PeerServices } from "../rafthttp/peer-server.js";

/** etcd's texts for the promotion refusals the peer port answers with. */
const PROMOTE_TEXTS: Record<string, [PeerServiceError["code"], string]> = {
  MemberNotFound: ["MemberNotFound", "membership: ID not found"],
  MemberNotLearner: ["MemberNotLearner", "membership: can only promote a learner member"],
  LearnerNotReady: ["LearnerNotReady", "etcdserver: can only promote a learner member which is in sync with leader"],
};

export function peerServices(server: EtcdServer): PeerServices {
  const members = (): PeerMember[] => server.membership.list().map((m) => ({ ...m }));
  return {
    clusterId: server.clusterId,
    memberId: server.memberId,
    members,
    clusterVersion: () => server.membership.clusterVersion,
    promoteMember: async (id) => {
      try {
        return (await server.memberPromote(id)).map((m) => ({ ...m }));
      } catch (err) {
        const known = err instanceof ServerError ? PROMOTE_TEXTS[err.code] : undefined;
        if (known) throw new PeerServiceError(known[0], known[1]);
        throw new PeerServiceError("Other", (err as Error).message);
      }
    },
    // The peer port answers from this member's lessor only (never forwarded again): a member
    // that is not the leader refuses, and the follower asking tries again with the new leader.
    leaseRenew: async (id) => {
      if (!server.isLeader) throw new PeerServiceError("Other", "not a primary lessor");
      try {
        const ttl = await server.leaseRenew(id);
        if (ttl === 0 && server.lessor.lookup(id) === undefined) throw new PeerServiceError("LeaseNotFound", "lease not found");
        return ttl;
      } catch (err) {
        if (err instanceof PeerServiceError) throw err;
        throw new PeerServiceError("Other", err instanceof ServerError && err.code === "NotLeader" ? "not a primary lessor" : (err as Error).message);
      }
    },
    leaseTimeToLive: async (id, keys) => {
      if (!server.isLeader) throw new PeerServiceError("Other", "not a primary lessor");
      const lease = await server.leaseTimeToLive(id, keys);
      if (lease === undefined) throw new PeerServiceError("LeaseNotFound", "lease not found");
      return { ttl: lease.ttlSeconds, grantedTtl: lease.grantedTtlSeconds, keys: lease.keys };
    },
  };
}
