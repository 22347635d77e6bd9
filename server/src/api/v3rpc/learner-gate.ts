/**
 * A learner serves almost nothing to clients (etcd 3.4's interceptors): while this member is a
 * learner in the membership, every call answers Unavailable "etcdserver: rpc not supported for
 * learner" except Maintenance.Status and serializable ranges; streaming calls (Watch, lease
 * keep-alives, snapshots) are all refused. Applied to every service of the registry, so the
 * JSON gateway, which calls the same handlers, is gated alike.
 */
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { ServerError } from "../../server/errors.js";
import { toServiceError } from "./errors.js";

/** What the gate asks of the member. */
export interface LearnerState {
  /** Whether this member is a learner in the membership now. */
  readonly isLearner: boolean;
}

/** Unary paths a learner still serves; `serializableOnly` ones only with `serializable` set. */
const LEARNER_UNARY: Record<string, { serializableOnly: boolean }> = {
  "/etcdserverpb.Maintenance/Status": { serializableOnly: false },
  "/etcdserverpb.KV/Range": { serializableOnly: true },
};

type AnyHandler = (call: any, callback?: (err: unknown, value?: unknown) => void) => void;

/** `implementation` with each method refused while `member` is a learner (see above). */
export function gateLearner<I extends UntypedServiceImplementation>(definition: ServiceDefinition<I>, implementation: I, member: LearnerState): I {
  const gated: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name] as unknown as AnyHandler;
    const allowed = LEARNER_UNARY[method.path];
    const streaming = method.requestStream || method.responseStream;
    gated[name] = ((call: any, callback?: (err: unknown, value?: unknown) => void) => {
      if (member.isLearner) {
        const servable = !streaming && allowed !== undefined && (!allowed.serializableOnly || call.request?.serializable === true);
        if (!servable) {
          const err = toServiceError(new ServerError("NotSupportedForLearner"));
          if (callback !== undefined) callback(err);
          else call.emit("error", err);
          return;
        }
      }
      handler(call, callback);
    }) as never;
  }
  return gated as I;
}
