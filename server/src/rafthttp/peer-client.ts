/**
 * The member's requests to another member's peer port outside raft (etcd's leasehttp client):
 * a follower forwards lease keep-alives (`POST /leases`, LeaseKeepAliveRequest) and time-to-live
 * queries (`POST /leases/internal`, leasepb.LeaseInternalRequest) to the leader, whose lessor
 * alone counts leases down. Bodies are protobuf both ways.
 */
import { LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { PeerHttpClient } from "./peer-http-client.js";
import { unwrapField1, wrapField1 } from "./peer-server.js";

/** A forwarded lease request failed (the caller tries the next URL or waits for a leader). */
export class LeaseForwardError extends Error {
  override name = "LeaseForwardError";
}

export class PeerClient {
  constructor(private readonly options: { timeoutMs: number }, private readonly deps: { client: PeerHttpClient }) {}

  async renew(peerUrl: string, id: bigint): Promise<number | undefined> {
    const body = LeaseKeepAliveRequest.encode({ ID: id }).finish();
    const res = await this.post(peerUrl, "/leases", body);
    if (res === undefined) return undefined;
    const resp = LeaseKeepAliveResponse.decode(res);
    if (resp.ID !== id) throw new LeaseForwardError("lease: renew id mismatch");
    return Number(resp.TTL);
  }

  async timeToLive(peerUrl: string, id: bigint, keys: boolean): Promise<{ ttl: number; grantedTtl: number; keys: Buffer[] } | undefined> {
    const body = wrapField1(LeaseTimeToLiveRequest.encode({ ID: id, keys }).finish());
    const res = await this.post(peerUrl, "/leases/internal", body);
    if (res === undefined) return undefined;
    const resp = LeaseTimeToLiveResponse.decode(unwrapField1(res) ?? new Uint8Array(0));
    if (resp.ID !== id) throw new LeaseForwardError("lease: renew id mismatch");
    return { ttl: Number(resp.TTL), grantedTtl: Number(resp.grantedTTL), keys: resp.keys };
  }

  /** The answer's body; undefined when the lease does not exist (404). @throws LeaseForwardError */
  private async post(peerUrl: string, path: string, body: Uint8Array): Promise<Uint8Array | undefined> {
    let res;
    try {
      res = await this.deps.client.request(peerUrl.replace(/\/+$/, "") + path, "POST", { "Content-Type": "application/protobuf" }, body, this.options.timeoutMs);
    } catch (err) {
      throw new LeaseForwardError((err as Error).message);
    }
    if (res.status === 404) return undefined;
    if (res.status === 408) throw new LeaseForwardError("waiting for node to catch up its applied index has timed out");
    if (res.status !== 200) throw new LeaseForwardError(`lease: unknown error(${res.body.toString()})`);
    return res.body;
  }
}
