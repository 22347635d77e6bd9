/**
 * What etcd 3.4's gRPC interceptors refuse before a handler runs, applied to every service of the
 * registry (so the JSON gateway, which calls the same handlers, is gated alike):
 *
 * - A learner serves almost nothing to clients: while this member is a learner in the membership,
 *   every call answers Unavailable "etcdserver: rpc not supported for learner" except
 *   Maintenance.Status and serializable ranges; streaming calls (Watch, lease keep-alives,
 *   snapshots) are all refused.
 * - A call whose metadata carries `hasleader: true` (clientv3's WithRequireLeader: every
 *   keep-alive stream of clientv3's lessor, `etcdctl watch`) needs a leader: while this member
 *   knows none it answers Unavailable "etcdserver: no leader". A stream that asked for one and is
 *   open is ended with that status once the member has known no leader for three election
 *   timeouts in a row (etcd's monitorLeader), so a client of a partitioned member goes elsewhere
 *   instead of watching a member that no longer hears from the cluster.
 */
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { ServerError } from "../../server/errors.js";
import { toServiceError } from "./errors.js";

/** What the gate asks of the member. */
export interface MemberGateState {
  /** Whether this member is a learner in the membership now. */
  readonly isLearner: boolean;
  /** Whether this member knows a leader now. */
  readonly hasLeader: boolean;
  /** Calls `listener` once the member has long known no leader; returns the unsubscribe. */
  onLeaderLongLost(listener: () => void): () => void;
}

/** Unary paths a learner still serves; `serializableOnly` ones only with `serializable` set. */
const LEARNER_UNARY: Record<string, { serializableOnly: boolean }> = {
  "/etcdserverpb.Maintenance/Status": { serializableOnly: false },
  "/etcdserverpb.KV/Range": { serializableOnly: true },
};

/** clientv3's metadata key and value for "this call requires a leader" (rpctypes/md.go). */
const REQUIRE_LEADER_KEY = "hasleader";
const HAS_LEADER = "true";

type AnyHandler = (call: any, callback?: (err: unknown, value?: unknown) => void) => void;

function requiresLeader(call: any): boolean {
  const values = call.metadata?.get?.(REQUIRE_LEADER_KEY) as unknown[] | undefined;
  return values !== undefined && values.length > 0 && values[0] === HAS_LEADER;
}

/** `implementation` with each method refused as etcd's interceptors refuse it (see above). */
export function gateMember<I extends UntypedServiceImplementation>(definition: ServiceDefinition<I>, implementation: I, member: MemberGateState): I {
  const gated: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name] as unknown as AnyHandler;
    const allowed = LEARNER_UNARY[method.path];
    const streaming = method.requestStream || method.responseStream;
    gated[name] = ((call: any, callback?: (err: unknown, value?: unknown) => void) => {
      if (member.isLearner) {
        const servable = !streaming && allowed !== undefined && (!allowed.serializableOnly || call.request?.serializable === true);
        if (!servable) return refuse(call, callback, "NotSupportedForLearner");
      }
      if (requiresLeader(call)) {
        if (!member.hasLeader) return refuse(call, callback, "NoLeader");
        if (streaming) watchLeader(call, member);
      }
      handler(call, callback);
    }) as never;
  }
  return gated as I;
}

/** Answers `call` with the refusal `code`: through its callback (unary) or as its error (streams). */
function refuse(call: any, callback: ((err: unknown, value?: unknown) => void) | undefined, code: "NotSupportedForLearner" | "NoLeader"): void {
  const err = toServiceError(new ServerError(code));
  if (callback !== undefined) callback(err);
  else call.emit("error", err);
}

/** Ends stream `call` with "etcdserver: no leader" if the member long loses its leader while it is open. */
function watchLeader(call: any, member: MemberGateState): void {
  let over = false;
  const unsubscribe = member.onLeaderLongLost(() => {
    if (over) return;
    over = true;
    call.emit("error", toServiceError(new ServerError("NoLeader")));
  });
  const done = (): void => {
    over = true;
    unsubscribe();
  };
  call.once("cancelled", done);
  call.once("close", done);
  call.once("finish", done);
}
