/**
 * The operator's etcd administration over gRPC (the Cluster and Maintenance services), one
 * channel per endpoint (address, and with TLS the server name and credentials), kept until
 * `forget` or `close`. With TLS the member's certificate is checked against the cluster's CA
 * for the member's DNS name (the address is a pod IP). Every call has a deadline. Errors are
 * EtcdAdminError with the gRPC code and etcd's message.
 *
 * Authentication: an endpoint with `auth` (user and password) gets a simple token from
 * Auth.Authenticate, cached per channel and user and sent as the `token` metadata. A call
 * refused for its token (expired, or dropped when auth was turned off and on) or for having none
 * authenticates again once and is retried; when etcd answers that authentication is not enabled,
 * the call goes without a token. (With client TLS and client-cert-auth a certificate whose common
 * name is the user authenticates by itself; etcd takes the token first when both are there.)
 */
import { createHash } from "node:crypto";
import { Metadata, credentials, type ServiceError } from "@grpc/grpc-js";
import {
  AlarmRequest_AlarmAction,
  AlarmType,
  AuthClient,
  type AlarmRequest,
  type AlarmResponse,
  type AuthDisableRequest,
  type AuthDisableResponse,
  type AuthEnableRequest,
  type AuthEnableResponse,
  type AuthenticateRequest,
  type AuthenticateResponse,
  type AuthUserAddRequest,
  type AuthUserAddResponse,
  type AuthUserChangePasswordRequest,
  type AuthUserChangePasswordResponse,
  type AuthUserGrantRoleRequest,
  type AuthUserGrantRoleResponse,
  ClusterClient,
  type DefragmentRequest,
  type DefragmentResponse,
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
  type HashKVRequest,
  type HashKVResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { EtcdMemberEntry, EtcdMemberStatus } from "../cluster/observed.js";
import { memberIdHex } from "../cluster/naming.js";
import type { EtcdAdmin, EtcdAlarm, MemberEndpoint } from "../cluster/reconciler.js";

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
  /** Deadline of a Defragment call, ms (default 60 s): a large database takes a while. */
  defragTimeoutMs?: number;
}

interface Clients {
  address: string;
  cluster: ClusterClient;
  maintenance: MaintenanceClient;
  auth: AuthClient;
  /** Simple tokens by user name. */
  tokens: Map<string, string>;
}

/** etcd's texts (rpctypes) the token handling acts on. */
const AUTH_NOT_ENABLED = "authentication is not enabled";
const TOKEN_REFUSED = ["invalid auth token", "user name is empty", "permission denied"];
const USER_EXISTS = "user name already exists";

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
        auth: new AuthClient(endpoint.address, creds, opts),
        tokens: new Map(),
      };
      this.clients.set(key, c);
    }
    return c;
  }

  private raw<Req, Res>(
    endpoint: MemberEndpoint,
    invoke: (c: Clients, req: Req, md: Metadata, opts: { deadline: Date }, cb: (e: ServiceError | null, r: Res) => void) => void,
    req: Req,
    token: string | undefined,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.options.timeoutMs);
      const md = new Metadata();
      if (token !== undefined) md.set("token", token);
      invoke(this.get(endpoint), req, md, { deadline }, (err, res) => {
        if (err) reject(new EtcdAdminError(endpoint.address, err.code, err.details || err.message));
        else resolve(res);
      });
    });
  }

  /** A fresh simple token for the endpoint's user, or undefined when auth is not enabled. */
  private async authenticate(endpoint: MemberEndpoint): Promise<string | undefined> {
    const a = endpoint.auth!;
    const c = this.get(endpoint);
    try {
      const r = await this.raw<AuthenticateRequest, AuthenticateResponse>(endpoint, (c, req, md, o, cb) => c.auth.authenticate(req, md, o, cb), { name: a.user, password: a.password }, undefined);
      c.tokens.set(a.user, r.token);
      return r.token;
    } catch (err) {
      if (err instanceof EtcdAdminError && err.message.includes(AUTH_NOT_ENABLED)) {
        c.tokens.delete(a.user);
        return undefined;
      }
      throw err;
    }
  }

  private async call<Req, Res>(
    endpoint: MemberEndpoint,
    invoke: (c: Clients, req: Req, md: Metadata, opts: { deadline: Date }, cb: (e: ServiceError | null, r: Res) => void) => void,
    req: Req,
  ): Promise<Res> {
    const user = endpoint.auth?.user;
    const token = user === undefined ? undefined : this.get(endpoint).tokens.get(user);
    try {
      return await this.raw(endpoint, invoke, req, token);
    } catch (err) {
      if (user === undefined || !(err instanceof EtcdAdminError) || !TOKEN_REFUSED.some((t) => err.message.includes(t))) throw err;
      // Once more, with a fresh token (or none, when auth is off).
      return this.raw(endpoint, invoke, req, await this.authenticate(endpoint));
    }
  }

  async status(endpoint: MemberEndpoint): Promise<EtcdMemberStatus> {
    const r = await this.call<StatusRequest, StatusResponse>(endpoint, (c, req, md, o, cb) => c.maintenance.status(req, md, o, cb), {});
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
    const r = await this.call<MemberListRequest, MemberListResponse>(endpoint, (c, req, md, o, cb) => c.cluster.memberList(req, md, o, cb), { linearizable: false });
    return r.members.map(toEntry);
  }

  async memberAdd(endpoint: MemberEndpoint, peerURLs: string[], isLearner: boolean): Promise<{ id: string; members: EtcdMemberEntry[] }> {
    const r = await this.call<MemberAddRequest, MemberAddResponse>(endpoint, (c, req, md, o, cb) => c.cluster.memberAdd(req, md, o, cb), { peerURLs, isLearner });
    return { id: memberIdHex(r.member?.ID ?? 0n), members: r.members.map(toEntry) };
  }

  async memberRemove(endpoint: MemberEndpoint, id: string): Promise<void> {
    await this.call<MemberRemoveRequest, MemberRemoveResponse>(endpoint, (c, req, md, o, cb) => c.cluster.memberRemove(req, md, o, cb), { ID: BigInt(`0x${id}`) });
  }

  async memberPromote(endpoint: MemberEndpoint, id: string): Promise<void> {
    await this.call<MemberPromoteRequest, MemberPromoteResponse>(endpoint, (c, req, md, o, cb) => c.cluster.memberPromote(req, md, o, cb), { ID: BigInt(`0x${id}`) });
  }

  async moveLeader(endpoint: MemberEndpoint, targetId: string): Promise<void> {
    await this.call<MoveLeaderRequest, MoveLeaderResponse>(endpoint, (c, req, md, o, cb) => c.maintenance.moveLeader(req, md, o, cb), { targetID: BigInt(`0x${targetId}`) });
  }

  /**
   * Whether authentication is on: Authenticate with the endpoint's credentials succeeds (true),
   * or etcd answers that it is not enabled (false). Wrong credentials throw.
   */
  async authEnabled(endpoint: MemberEndpoint): Promise<boolean> {
    if (endpoint.auth === undefined) throw new Error("authEnabled needs credentials");
    return (await this.authenticate(endpoint)) !== undefined;
  }

  /**
   * etcd's order for turning auth on: the user root (added with `password`, or given it when it
   * exists), the role root granted to it, auth enabled. Each step may have been done before.
   */
  async enableAuth(endpoint: MemberEndpoint, password: string): Promise<void> {
    try {
      await this.call<AuthUserAddRequest, AuthUserAddResponse>(endpoint, (c, req, md, o, cb) => c.auth.userAdd(req, md, o, cb), { name: "root", password, options: { noPassword: false }, hashedPassword: "" });
    } catch (err) {
      if (!(err instanceof EtcdAdminError && err.message.includes(USER_EXISTS))) throw err;
      await this.call<AuthUserChangePasswordRequest, AuthUserChangePasswordResponse>(endpoint, (c, req, md, o, cb) => c.auth.userChangePassword(req, md, o, cb), { name: "root", password, hashedPassword: "" });
    }
    await this.call<AuthUserGrantRoleRequest, AuthUserGrantRoleResponse>(endpoint, (c, req, md, o, cb) => c.auth.userGrantRole(req, md, o, cb), { user: "root", role: "root" });
    await this.call<AuthEnableRequest, AuthEnableResponse>(endpoint, (c, req, md, o, cb) => c.auth.authEnable(req, md, o, cb), {});
  }

  /** Turns auth off (needs the endpoint's root credentials while it is on). */
  async disableAuth(endpoint: MemberEndpoint): Promise<void> {
    if (endpoint.auth !== undefined && this.get(endpoint).tokens.get(endpoint.auth.user) === undefined) await this.authenticate(endpoint);
    await this.call<AuthDisableRequest, AuthDisableResponse>(endpoint, (c, req, md, o, cb) => c.auth.authDisable(req, md, o, cb), {});
    if (endpoint.auth !== undefined) this.get(endpoint).tokens.delete(endpoint.auth.user);
  }

  /** Defragments the member at `endpoint` (it may take a while: the deadline is `defragTimeoutMs`). */
  async defragment(endpoint: MemberEndpoint): Promise<void> {
    const timeoutMs = this.options.defragTimeoutMs ?? 60_000;
    const user = endpoint.auth?.user;
    const attempt = (token: string | undefined) =>
      new Promise<void>((resolve, reject) => {
        const md = new Metadata();
        if (token !== undefined) md.set("token", token);
        this.get(endpoint).maintenance.defragment({} as DefragmentRequest, md, { deadline: new Date(Date.now() + timeoutMs) }, (err: ServiceError | null, _r: DefragmentResponse) => {
          if (err) reject(new EtcdAdminError(endpoint.address, err.code, err.details || err.message));
          else resolve();
        });
      });
    try {
      await attempt(user === undefined ? undefined : this.get(endpoint).tokens.get(user));
    } catch (err) {
      if (user === undefined || !(err instanceof EtcdAdminError) || !TOKEN_REFUSED.some((t) => err.message.includes(t))) throw err;
      await attempt(await this.authenticate(endpoint));
    }
  }

  /** The cluster's raised alarms. */
  async alarms(endpoint: MemberEndpoint): Promise<EtcdAlarm[]> {
    const r = await this.call<AlarmRequest, AlarmResponse>(endpoint, (c, req, md, o, cb) => c.maintenance.alarm(req, md, o, cb), { action: AlarmRequest_AlarmAction.GET, memberID: 0n, alarm: AlarmType.NONE });
    return r.alarms.map((a) => ({ memberId: memberIdHex(a.memberID), alarm: a.alarm === AlarmType.NOSPACE ? "NOSPACE" : a.alarm === AlarmType.CORRUPT ? "CORRUPT" : "NONE" }));
  }

  /** Disarms one member's alarm. */
  async disarm(endpoint: MemberEndpoint, alarm: EtcdAlarm): Promise<void> {
    const type = alarm.alarm === "NOSPACE" ? AlarmType.NOSPACE : alarm.alarm === "CORRUPT" ? AlarmType.CORRUPT : AlarmType.NONE;
    await this.call<AlarmRequest, AlarmResponse>(endpoint, (c, req, md, o, cb) => c.maintenance.alarm(req, md, o, cb), { action: AlarmRequest_AlarmAction.DEACTIVATE, memberID: BigInt(`0x${alarm.memberId}`), alarm: type });
  }

  async hashKV(endpoint: MemberEndpoint, revision: number): Promise<{ hash: number; compactRevision: number; revision: number }> {
    const r = await this.call<HashKVRequest, HashKVResponse>(endpoint, (c, req, md, o, cb) => c.maintenance.hashKv(req, md, o, cb), { revision: BigInt(revision) });
    return { hash: r.hash, compactRevision: Number(r.compactRevision), revision };
  }

  /** Closes the channels of addresses (`host:port`) not in `keep`. */
  forget(keep: Set<string>): void {
    for (const [ep, c] of this.clients) {
      if (keep.has(c.address)) continue;
      c.cluster.close();
      c.maintenance.close();
      c.auth.close();
      this.clients.delete(ep);
    }
  }

  close(): void {
    this.forget(new Set());
  }
}
