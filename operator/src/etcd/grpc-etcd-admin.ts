/**
 * The operator's etcd administration over gRPC (the Cluster and Maintenance services), one
 * channel per endpoint (address, and with TLS the server name and credentials), kept until
 * `forget` or `close`. With TLS the member's certificate is checked against the cluster's CA
 * for the member's DNS name (the address is a pod IP). Every call has a deadline. Errors are
 * EtcdAdminError with the gRPC code and etcd's message.
 */
import { createHash } from "node:crypto";
import { Metadata, credentials, type ServiceError } from "@grpc/grpc-js";
import {
  ClusterClient,
  MaintenanceClient,
  type Member,
  type MemberAddRequest,
  type MemberAddResponse,
  type MemberListRequest,
  type MemberListResponse,
  type MemberPromoteRequest,
  type MemberPromoteResponse,
  type MemberRemoveRequest,
  type MemberRemoveResponse,
  type MoveLeaderRequest,
  type MoveLeaderResponse,
  type StatusRequest,
  type StatusResponse,
  AlarmRequest_AlarmAction,
  AlarmType,
  type AlarmRequest,
  type AlarmResponse,
  type HashKVRequest,
  type HashKVResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { EtcdMemberEntry, EtcdMemberStatus } from "../cluster/observed.js";
import { memberIdHex } from "../cluster/naming.js";
import type { EtcdAdmin, MemberEndpoint } from "../cluster/reconciler.js";

export class EtcdAdminError extends Error {
  constructor(
    readonly endpoint: string,
    readonly code: number | undefined,
    message: string,
  ) {
    super(`${endpoint}: ${message}`);
    this.name = "EtcdAdminError";
  }
}

export interface GrpcEtcdAdminOptions {
  /** Deadline of every call, ms. */
  timeoutMs: number;
}

interface Clients {
  address: string;
  cluster: ClusterClient;
  maintenance: MaintenanceClient;
}

const MAX_CHANNELS = 256;

function channelKey(e: MemberEndpoint): string {
  if (e.tls === undefined) return e.address;
  const creds = createHash("sha256").update(e.tls.caPem).update(e.tls.certPem).digest("hex").slice(0, 16);
  return `${e.address}|${e.tls.serverName}|${creds}`;
}

function toEntry(m: Member): EtcdMemberEntry {
  return { id: memberIdHex(m.ID), name: m.name, peerURLs: m.peerURLs, clientURLs: m.clientURLs, isLearner: m.isLearner };
}

export class GrpcEtcdAdmin implements EtcdAdmin {
  private readonly clients = new Map<string, Clients>();

  constructor(private readonly options: GrpcEtcdAdminOptions = { timeoutMs: 3000 }) {}

  private get(endpoint: MemberEndpoint): Clients {
    const key = channelKey(endpoint);
    let c = this.clients.get(key);
    if (c === undefined) {
      // Bounded: pod IPs and rotated credentials come and go; past the cap every channel is reopened on use.
      if (this.clients.size >= MAX_CHANNELS) this.close();
      const t = endpoint.tls;
      const creds = t ? credentials.createSsl(Buffer.from(t.caPem), Buffer.from(t.keyPem), Buffer.from(t.certPem)) : credentials.createInsecure();
      const opts = t ? { "grpc.ssl_target_name_override": t.serverName, "grpc.default_authority": t.serverName } : {};
      c = {
        address: endpoint.address,
        cluster: new ClusterClient(endpoint.address, creds, opts),
        maintenance: new MaintenanceClient(endpoint.address, creds, opts),
      };
      this.clients.set(key, c);
    }
    return c;
  }

  private call<Req, Res>(
    endpoint: MemberEndpoint,
    invoke: (c: Clients, req: Req, opts: { deadline: Date }, cb: (e: ServiceError | null, r: Res) => void) => void,
    req: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.options.timeoutMs);
      invoke(this.get(endpoint), req, { deadline }, (err, res) => {
        if (err) reject(new EtcdAdminError(endpoint.address, err.code, err.details || err.message));
        else resolve(res);
      });
    });
  }

  async status(endpoint: MemberEndpoint): Promise<EtcdMemberStatus> {
    const r = await this.call<StatusRequest, StatusResponse>(endpoint, (c, req, o, cb) => c.maintenance.status(req, new Metadata(), o, cb), {});
    return {
      id: memberIdHex(r.header?.memberId ?? 0n),
      leaderId: memberIdHex(r.leader),
      raftIndex: Number(r.raftIndex),
      raftAppliedIndex: Number(r.raftAppliedIndex),
      revision: Number(r.header?.revision ?? 0n),
      dbSize: Number(r.dbSize),
      dbSizeInUse: Number(r.dbSizeInUse),
      version: r.version,
      isLearner: r.isLearner,
      clusterId: memberIdHex(r.header?.clusterId ?? 0n),
    };
  }

  async memberList(endpoint: MemberEndpoint): Promise<EtcdMemberEntry[]> {
    const r = await this.call<MemberListRequest, MemberListResponse>(endpoint, (c, req, o, cb) => c.cluster.memberList(req, new Metadata(), o, cb), { linearizable: false });
    return r.members.map(toEntry);
  }

  async memberAdd(endpoint: MemberEndpoint, peerURLs: string[], isLearner: boolean): Promise<{ id: string; members: EtcdMemberEntry[] }> {
    const r = await this.call<MemberAddRequest, MemberAddResponse>(endpoint, (c, req, o, cb) => c.cluster.memberAdd(req, new Metadata(), o, cb), { peerURLs, isLearner });
    return { id: memberIdHex(r.member?.ID ?? 0n), members: r.members.map(toEntry) };
  }

  async memberRemove(endpoint: MemberEndpoint, id: string): Promise<void> {
    await this.call<MemberRemoveRequest, MemberRemoveResponse>(endpoint, (c, req, o, cb) => c.cluster.memberRemove(req, new Metadata(), o, cb), { ID: BigInt(`0x${id}`) });
  }

  async memberPromote(endpoint: MemberEndpoint, id: string): Promise<void> {
    await this.call<MemberPromoteRequest, MemberPromoteResponse>(endpoint, (c, req, o, cb) => c.cluster.memberPromote(req, new Metadata(), o, cb), { ID: BigInt(`0x${id}`) });
  }

  async moveLeader(endpoint: MemberEndpoint, targetId: string): Promise<void> {
    await this.call<MoveLeaderRequest, MoveLeaderResponse>(endpoint, (c, req, o, cb) => c.maintenance.moveLeader(req, new Metadata(), o, cb), { targetID: BigInt(`0x${targetId}`) });
  }

  async alarmList(endpoint: MemberEndpoint): Promise<{ memberId: string; alarm: "NOSPACE" | "CORRUPT" | "NONE" }[]> {
    const r = await this.call<AlarmRequest, AlarmResponse>(endpoint, (c, req, o, cb) => c.maintenance.alarm(req, new Metadata(), o, cb), {
      action: AlarmRequest_AlarmAction.GET,
      memberID: 0n,
      alarm: AlarmType.NONE,
    });
    return r.alarms.map((a) => ({ memberId: memberIdHex(a.memberID), alarm: a.alarm === AlarmType.CORRUPT ? "CORRUPT" : a.alarm === AlarmType.NOSPACE ? "NOSPACE" : "NONE" }));
  }

  async alarmDisarm(endpoint: MemberEndpoint, memberId: string, alarm: "NOSPACE" | "CORRUPT"): Promise<void> {
    await this.call<AlarmRequest, AlarmResponse>(endpoint, (c, req, o, cb) => c.maintenance.alarm(req, new Metadata(), o, cb), {
      action: AlarmRequest_AlarmAction.DEACTIVATE,
      memberID: BigInt(`0x${memberId}`),
      alarm: alarm === "CORRUPT" ? AlarmType.CORRUPT : AlarmType.NOSPACE,
    });
  }

  async hashKV(endpoint: MemberEndpoint, revision: number): Promise<{ hash: number; compactRevision: number; revision: number }> {
    const r = await this.call<HashKVRequest, HashKVResponse>(endpoint, (c, req, o, cb) => c.maintenance.hashKv(req, new Metadata(), o, cb), { revision: BigInt(revision) });
    return { hash: r.hash, compactRevision: Number(r.compactRevision), revision };
  }

  /** Closes the channels of addresses (`host:port`) not in `keep`. */
  forget(keep: Set<string>): void {
    for (const [ep, c] of this.clients) {
      if (keep.has(c.address)) continue;
      c.cluster.close();
      c.maintenance.close();
      this.clients.delete(ep);
    }
  }

  close(): void {
    this.forget(new Set());
  }
}
