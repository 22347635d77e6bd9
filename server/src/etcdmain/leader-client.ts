/**
 * The member's LeaderClient over the peer port (etcd's leasehttp client and promoteMemberHTTP):
 * what a follower forwards to the leader. Lease requests go through rafthttp's PeerClient; a
 * promotion is `POST <peer URL>/members/promote/<id in decimal>`, answered with the members as
 * JSON or with etcd's refusals (412 not ready / not a learner, 404 unknown member, 408 timeout).
 */
import type { LeaseTimeToLiveResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { ErrLeaseNotFound } from "../lease/errors.js";
import type { PeerClient } from "../rafthttp/peer-client.js";
import type { PeerHttpClient } from "../rafthttp/peer-http-client.js";
import { parseMembers } from "./cluster-bootstrap.js";
import type { LeaderClient } from "../server/leader-forward.js";
import type { MemberRecord } from "../server/cluster/membership.js";
import { serverError } from "../server/errors.js";

export class PeerLeaderClient implements LeaderClient {
  constructor(private readonly leases: PeerClient, private readonly http: PeerHttpClient) {}

  async leaseRenew(peerUrl: string, id: bigint): Promise<number> {
    const ttl = await this.leases.renew(peerUrl, id);
    if (ttl === undefined) throw new ErrLeaseNotFound();
    return ttl;
  }

  async leaseTimeToLive(peerUrl: string, id: bigint, keys: boolean): Promise<LeaseTimeToLiveResponse> {
    const r = await this.leases.timeToLive(peerUrl, id, keys);
    if (r === undefined) throw new ErrLeaseNotFound();
    return { header: undefined, ID: id, TTL: BigInt(r.ttl), grantedTTL: BigInt(r.grantedTtl), keys: r.keys };
  }

  async promoteMember(peerUrl: string, id: bigint, timeoutMs: number): Promise<MemberRecord[]> {
    const res = await this.http.request(`${peerUrl.replace(/\/+$/, "")}/members/promote/${id.toString(10)}`, "POST", {}, new Uint8Array(0), timeoutMs);
    const text = res.body.toString();
    if (res.status === 408) throw serverError("Timeout");
    if (res.status === 412) {
      if (text.includes("can only promote a learner member which is in sync with leader")) throw serverError("LearnerNotReady");
      if (text.includes("can only promote a learner member")) throw serverError("MemberNotLearner");
      throw new Error(`member promote: unknown error(${text})`);
    }
    if (res.status === 404) throw serverError("MemberNotFound");
    if (res.status !== 200) throw new Error(`member promote: unknown error(${text})`);
    return parseMembers(text).map((m) => ({ id: m.id, name: m.name, peerUrls: m.peerUrls, clientUrls: m.clientUrls, isLearner: m.isLearner }));
  }
}
