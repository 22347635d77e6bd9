/** The root-only gate of the Maintenance service's hashes, defragmentation and snapshots. */
import { status as Status } from "@grpc/grpc-js";
import type { EtcdServer } from "../../server/etcd-server.js";
import { ServerError, type ServerErrorCode } from "../../server/errors.js";
import type { RequestContext } from "../../server/request-context.js";

/**
 * The root-only check of hashes, defragmentation and snapshots. etcd's maintenance server passes
 * the auth store's own errors on untranslated: code Unknown with the auth store's text.
 */
export async function checkMaintenanceAdmin(server: EtcdServer, ctx: RequestContext): Promise<void> {
  try {
    await server.checkAdmin(ctx);
  } catch (err) {
    const text = err instanceof ServerError ? AUTH_STORE_TEXTS[err.code] : undefined;
    if (text === undefined) throw err;
    throw Object.assign(new Error(text), { code: Status.UNKNOWN, details: text });
  }
}

const AUTH_STORE_TEXTS: Partial<Record<ServerErrorCode, string>> = {
  UserEmpty: "auth: user name is empty",
  UserNotFound: "auth: user not found",
  PermissionDenied: "auth: permission denied",
  InvalidAuthToken: "auth: invalid auth token",
};
