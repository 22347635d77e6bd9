/**
 * Applies etcd's v2 `Request` entries as etcd 3.4 does (its applierV2store): PUT of
 * "/0/members/<hex id>/attributes" names a member, PUT of "/0/version" sets the cluster version
 * (both through the membership, so the backend records follow); every other request goes to the
 * v2 store: POST creates in order, PUT sets / creates / updates / compares-and-swaps by its
 * preconditions, DELETE deletes or compares-and-deletes, QGET reads, SYNC expires the keys whose
 * TTL ran out by its time. The member and version paths stage the membership's records (and the
 * v2 store's image) into the entry's write session; other writes stay in memory: the store is
 * rebuilt at restart from a raft snapshot or that image, then the v2 requests after it in the WAL
 * (catchUpV2Store), as etcd 3.4 rebuilds it.
 *
 * Results: `{ value: V2Event }` (or undefined for the member and version paths, as etcd answers
 * them with an empty response); a V2Error or an unknown method is the proposer's error.
 */
import type { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";
import { EntryType, type Entry } from "../../raft/types.js";
import { decodeEntry } from "./entry-codec.js";
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
  return result;
}

/**
 * A write session that keeps nothing, for the membership's paths when what they would stage is
 * already in the backend (a catch-up) or comes from elsewhere (migrate's etcd records).
 */
export const DISCARDING_SESSION = { stage() {}, stageLatest() {} } as unknown as WriteSession;

/**
 * Brings the v2 store up to `entry`, an entry already applied to the backend: a v2 request above
 * the store's index (`membership.v2Index`) is applied to the v2 store alone, as etcd 3.4 applies
 * every v2 request whatever its consistent index. Entries come in log order: after a restart, the
 * WAL's from the raft snapshot up to the consistent index; after a leader's snapshot whose image
 * is ahead of it, those the leader sends next.
 * @returns the request's result, for its proposer (undefined when the entry is not a v2 request
 *   the store lacks).
 */
export function catchUpV2Store(membership: Membership, entry: Entry): { id: bigint; result: ApplyResult } | undefined {
  if (entry.index <= membership.v2Index) return undefined;
  membership.v2Index = entry.index;
  if (entry.type !== EntryType.Normal || entry.data.length === 0) return undefined;
  let req: Request | undefined;
  try {
    const decoded = decodeEntry(entry.data);
    req = decoded.kind === "v2" ? decoded.req : decoded.req.v2;
  } catch (err) {
    throw new Error(`raft entry ${entry.index} does not decode: ${String(err)}`);
  }
  if (req === undefined) return undefined;
  return { id: req.ID ?? 0n, result: applyV2Request(membership, req, DISCARDING_SESSION) };
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
