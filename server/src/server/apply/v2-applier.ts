/**
 * Applies etcd's v2 `Request` entries as etcd 3.4 does (its applierV2store): PUT of
 * "/0/members/<hex id>/attributes" names a member, PUT of "/0/version" sets the cluster version
 * (both through the membership, so the backend records follow); every other request goes to the
 * v2 store: POST creates in order, PUT sets / creates / updates / compares-and-swaps by its
 * preconditions, DELETE deletes or compares-and-deletes, QGET reads, SYNC expires the keys whose
 * TTL ran out by its time. A changed v2 store is staged into the entry's write session.
 *
 * Results: `{ value: V2Event }` (or undefined for the member and version paths, as etcd answers
 * them with an empty response); a V2Error or an unknown method is the proposer's error.
 */
import type { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";
import type { Membership } from "../cluster/membership.js";
import type { ApplyResult } from "../proposer.js";
import type { WriteSession } from "../store-port.js";
import type { TtlOptions, V2Event } from "../../v2store/v2-store.js";

/** etcd matches this anywhere in the path (an unanchored regular expression). */
const MEMBER_ATTRIBUTES_PATH = /\/0\/members\/[0-9a-fA-F]{1,16}\/attributes/;
const CLUSTER_VERSION_PATH = "/0/version";

/** A v2 request with a method etcd does not apply. */
export class UnknownV2MethodError extends Error {
  readonly code = "V2_UNKNOWN_METHOD";
  constructor(method: string) {
    super(`etcdserver: unknown method (${method})`);
  }
}

export function applyV2Request(membership: Membership, r: Request, w: WriteSession): ApplyResult {
  const store = membership.v2;
  const before = store.index;
  const path = r.Path ?? "";
  const val = r.Val ?? "";
  const prevValue = r.PrevValue ?? "";
  const prevIndex = Number(r.PrevIndex ?? 0n);
  const ttl: TtlOptions = { expireTimeNs: r.Expiration ?? 0n, refresh: r.Refresh ?? false };
  let result: ApplyResult;
  try {
    switch (r.Method) {
      case "POST":
        result = { value: store.create(path, r.Dir ?? false, val, true, ttl) };
        break;
      case "PUT":
        result = put(membership, r, w, path, val, prevValue, prevIndex, ttl);
        break;
      case "DELETE":
        result = {
          value: prevIndex > 0 || prevValue !== "" ? store.compareAndDelete(path, prevValue, prevIndex) : store.delete(path, r.Dir ?? false, r.Recursive ?? false),
        };
        break;
      case "QGET":
        result = { value: store.get(path, r.Recursive ?? false, r.Sorted ?? false) };
        break;
      case "SYNC":
        store.deleteExpiredKeys(r.Time ?? 0n);
        result = { value: undefined };
        break;
      default:
        result = { error: new UnknownV2MethodError(r.Method ?? "") };
    }
  } catch (err) {
    result = { error: err as Error };
  }
  if (store.index !== before) membership.stageV2Store(w);
  return result;
}

function put(membership: Membership, r: Request, w: WriteSession, path: string, val: string, prevValue: string, prevIndex: number, ttl: TtlOptions): ApplyResult {
  const store = membership.v2;
  let event: V2Event;
  if (r.PrevExist !== undefined) {
    if (r.PrevExist) {
      event = prevIndex === 0 && prevValue === "" ? store.update(path, val, ttl) : store.compareAndSwap(path, prevValue, prevIndex, val, ttl);
    } else {
      event = store.create(path, r.Dir ?? false, val, false, ttl);
    }
    return { value: event };
  }
  if (prevIndex > 0 || prevValue !== "") return { value: store.compareAndSwap(path, prevValue, prevIndex, val, ttl) };
  if (MEMBER_ATTRIBUTES_PATH.test(path)) {
    const parts = path.split("/");
    const id = BigInt("0x" + parts[parts.length - 2]); // the member directory's name
    const attr = JSON.parse(val) as { name?: string; clientURLs?: string[] | null };
    membership.setAttributes(id, attr.name ?? "", attr.clientURLs ?? [], w);
    return { value: undefined };
  }
  if (path === CLUSTER_VERSION_PATH) {
    membership.setClusterVersion(val, w);
    return { value: undefined };
  }
  return { value: store.set(path, r.Dir ?? false, val, ttl) };
}
