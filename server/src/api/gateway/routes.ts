/**
 * The gateway's routes: etcd 3.4's HTTP bindings of its gRPC methods (the google.api.http options
 * of its rpc.proto, v3lock.proto and v3election.proto), resolved against the service registry. A
 * bound method that a registered service has runs that service's handler; a bound method that no
 * registered service has is answered as the gRPC port answers it (Unimplemented).
 */
import type { MethodDefinition } from "@grpc/grpc-js";
import type { ServiceRegistry } from "../v3rpc/service-registry.js";

/** Route shapes: how the handler is called. */
export type RouteKind = "unary" | "bidi" | "server-stream";

export interface Route {
  kind: RouteKind;
  /** Fully qualified request and response message names. */
  request: string;
  response: string;
  /** The gRPC method, whose request encoder measures requests against gRPC's receive limit. */
  method: MethodDefinition<unknown, unknown>;
  /** The grpc-js style handler the gRPC server runs for this method. */
  handler: (...args: never[]) => void;
}

export interface GatewayRoutes {
  /** Routes by path under the gateway's prefix ("kv/range"). */
  served: Map<string, Route>;
  /** Paths of bound methods no registered service has, with their gRPC method paths. */
  unserved: Map<string, string>;
}

interface Binding {
  /** gRPC method path: "/<package>.<Service>/<Method>". */
  method: string;
  /** Paths under the gateway's prefix. */
  paths: string[];
  /** Fully qualified request and response message names. */
  request: string;
  response: string;
}

/**
 * The binding of `method` ("<package>.<Service>/<Method>") to `paths`; its messages are
 * <stem>Request and <stem>Response in the service's package, the stem being the method's name
 * unless given.
 */
function bind(method: string, paths: string[], stem = method.slice(method.indexOf("/") + 1)): Binding {
  const pkg = method.slice(0, method.indexOf("."));
  return { method: `/${method}`, paths, request: `${pkg}.${stem}Request`, response: `${pkg}.${stem}Response` };
}

/** etcd 3.4's gateway, method by method. */
const BINDINGS: readonly Binding[] = [
  bind("etcdserverpb.KV/Range", ["kv/range"]),
  bind("etcdserverpb.KV/Put", ["kv/put"]),
  bind("etcdserverpb.KV/DeleteRange", ["kv/deleterange"]),
  bind("etcdserverpb.KV/Txn", ["kv/txn"]),
  bind("etcdserverpb.KV/Compact", ["kv/compaction"], "Compaction"),
  bind("etcdserverpb.Watch/Watch", ["watch"]),
  bind("etcdserverpb.Lease/LeaseGrant", ["lease/grant"]),
  bind("etcdserverpb.Lease/LeaseRevoke", ["lease/revoke", "kv/lease/revoke"]),
  bind("etcdserverpb.Lease/LeaseKeepAlive", ["lease/keepalive"]),
  bind("etcdserverpb.Lease/LeaseTimeToLive", ["lease/timetolive", "kv/lease/timetolive"]),
  bind("etcdserverpb.Lease/LeaseLeases", ["lease/leases", "kv/lease/leases"]),
  bind("etcdserverpb.Cluster/MemberAdd", ["cluster/member/add"]),
  bind("etcdserverpb.Cluster/MemberRemove", ["cluster/member/remove"]),
  bind("etcdserverpb.Cluster/MemberUpdate", ["cluster/member/update"]),
  bind("etcdserverpb.Cluster/MemberList", ["cluster/member/list"]),
  bind("etcdserverpb.Cluster/MemberPromote", ["cluster/member/promote"]),
  bind("etcdserverpb.Maintenance/Alarm", ["maintenance/alarm"]),
  bind("etcdserverpb.Maintenance/Status", ["maintenance/status"]),
  bind("etcdserverpb.Maintenance/Defragment", ["maintenance/defragment"]),
  bind("etcdserverpb.Maintenance/Hash", ["maintenance/hash"]),
  // etcd 3.4 has no gateway route for HashKV (gRPC only).
  bind("etcdserverpb.Maintenance/Snapshot", ["maintenance/snapshot"]),
  bind("etcdserverpb.Maintenance/MoveLeader", ["maintenance/transfer-leadership"]),
  bind("etcdserverpb.Auth/AuthEnable", ["auth/enable"]),
  bind("etcdserverpb.Auth/AuthDisable", ["auth/disable"]),
  bind("etcdserverpb.Auth/Authenticate", ["auth/authenticate"]),
  bind("etcdserverpb.Auth/UserAdd", ["auth/user/add"], "AuthUserAdd"),
  bind("etcdserverpb.Auth/UserGet", ["auth/user/get"], "AuthUserGet"),
  bind("etcdserverpb.Auth/UserList", ["auth/user/list"], "AuthUserList"),
  bind("etcdserverpb.Auth/UserDelete", ["auth/user/delete"], "AuthUserDelete"),
  bind("etcdserverpb.Auth/UserChangePassword", ["auth/user/changepw"], "AuthUserChangePassword"),
  bind("etcdserverpb.Auth/UserGrantRole", ["auth/user/grant"], "AuthUserGrantRole"),
  bind("etcdserverpb.Auth/UserRevokeRole", ["auth/user/revoke"], "AuthUserRevokeRole"),
  bind("etcdserverpb.Auth/RoleAdd", ["auth/role/add"], "AuthRoleAdd"),
  bind("etcdserverpb.Auth/RoleGet", ["auth/role/get"], "AuthRoleGet"),
  bind("etcdserverpb.Auth/RoleList", ["auth/role/list"], "AuthRoleList"),
  bind("etcdserverpb.Auth/RoleDelete", ["auth/role/delete"], "AuthRoleDelete"),
  bind("etcdserverpb.Auth/RoleGrantPermission", ["auth/role/grant"], "AuthRoleGrantPermission"),
  bind("etcdserverpb.Auth/RoleRevokePermission", ["auth/role/revoke"], "AuthRoleRevokePermission"),
  bind("v3lockpb.Lock/Lock", ["lock/lock"]),
  bind("v3lockpb.Lock/Unlock", ["lock/unlock"]),
  bind("v3electionpb.Election/Campaign", ["election/campaign"]),
  bind("v3electionpb.Election/Proclaim", ["election/proclaim"]),
  bind("v3electionpb.Election/Leader", ["election/leader"]),
  bind("v3electionpb.Election/Observe", ["election/observe"], "Leader"),
  bind("v3electionpb.Election/Resign", ["election/resign"]),
];

function kindOf(method: MethodDefinition<unknown, unknown>): RouteKind {
  if (method.requestStream && method.responseStream) return "bidi";
  if (method.responseStream) return "server-stream";
  if (!method.requestStream) return "unary";
  throw new Error(`gateway: client-streaming method ${method.path} has no gateway shape`);
}

/** The routes for the services in `registry`. */
export function gatewayRoutes(registry: ServiceRegistry): GatewayRoutes {
  const registered = new Map<string, Pick<Route, "method" | "handler">>();
  for (const { definition, implementation } of registry) {
    for (const [name, method] of Object.entries(definition)) registered.set(method.path, { method, handler: implementation[name] });
  }
  const routes: GatewayRoutes = { served: new Map(), unserved: new Map() };
  for (const b of BINDINGS) {
    const found = registered.get(b.method);
    for (const p of b.paths) {
      if (found === undefined) routes.unserved.set(p, b.method);
      else routes.served.set(p, { kind: kindOf(found.method), request: b.request, response: b.response, ...found });
    }
  }
  return routes;
}
