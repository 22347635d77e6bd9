/**
 * The etcdserverpb.Auth service: authentication and the administration of users and roles, each
 * a request through the member's log (as etcd 3.4, listing and getting too). Who may do what is
 * decided at apply (server/auth/auth-applier.ts).
 */
import type { AuthServer, AuthRoleGetResponse, AuthRoleListResponse, AuthUserGetResponse, AuthUserListResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { EtcdServer } from "../../server/etcd-server.js";
import { serverError } from "../../server/errors.js";
import type { Logger } from "../../pkg/logger.js";
import { unary } from "./grpc-util.js";

export function authService(server: EtcdServer, logger: Logger): AuthServer {
  /** Proposes one auth request; answers with `pick` of its result and the member's header. */
  const admin = <R>(field: string) =>
    unary<unknown, R>(async (req, ctx) => {
      const value = (await server.authRequest({ [field]: req }, ctx)) as Record<string, unknown> | undefined;
      return { ...(value ?? {}), header: server.header() } as R;
    }, logger);
  return {
    authEnable: admin("authEnable"),
    authDisable: admin("authDisable"),
    // AuthStatus came with etcd 3.5: a 3.4 member does not serve it.
    authStatus: unary(async () => {
      throw serverError("Unimplemented");
    }, logger),
    authenticate: unary(async (req, ctx) => ({ header: server.header(), token: await server.authenticate(req.name, req.password, ctx) }), logger),
    userAdd: admin("authUserAdd"),
    userGet: admin<AuthUserGetResponse>("authUserGet"),
    userList: admin<AuthUserListResponse>("authUserList"),
    userDelete: admin("authUserDelete"),
    userChangePassword: admin("authUserChangePassword"),
    userGrantRole: admin("authUserGrantRole"),
    userRevokeRole: admin("authUserRevokeRole"),
    roleAdd: admin("authRoleAdd"),
    roleGet: admin<AuthRoleGetResponse>("authRoleGet"),
    roleList: admin<AuthRoleListResponse>("authRoleList"),
    roleDelete: admin("authRoleDelete"),
    roleGrantPermission: admin("authRoleGrantPermission"),
    roleRevokePermission: admin("authRoleRevokePermission"),
  };
}
