/**
 * The gRPC services a member serves, as one list of {definition, implementation}: the gRPC server
 * adds every entry, and the JSON gateway routes its requests to the same implementations. A
 * service is served on both by adding it here.
 */
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { AuthService, ClusterService, KVService, LeaseService, MaintenanceService, WatchService } from "@etcd-ts/proto/etcdserverpb/rpc";
import { LockService } from "@etcd-ts/proto/v3lockpb/v3lock";
import { ElectionService } from "@etcd-ts/proto/v3electionpb/v3election";
import type { EtcdServer } from "../../server/etcd-server.js";
import type { Logger } from "../../pkg/logger.js";
import { kvService } from "./kv-service.js";
import { leaseService } from "./lease-service.js";
import { clusterService } from "./cluster-service.js";
import { maintenanceService } from "./maintenance-service.js";
import { authService } from "./auth-service.js";
import { watchService } from "./watch-service.js";
import { LocalClient } from "./local-client.js";
import { lockService } from "./lock-service.js";
import { electionService } from "./election-service.js";
import { gateMember, type MemberGateState } from "./member-gate.js";
import type { GrpcMetrics } from "./grpc-metrics.js";
import { installResponseHeaderEncoder } from "./response-header-encode.js";

export { GrpcMetrics, GRPC_CODE_NAMES, GRPC_HANDLING_BUCKETS, type MethodCells } from "./grpc-metrics.js";

/** One served service: its methods (paths, streaming, codecs) and the handlers behind them. */
export interface ServiceEntry {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/** The services of one member, in the order the gRPC server adds them. */
export type ServiceRegistry = readonly ServiceEntry[];

export interface ServiceRegistryOptions {
  /** Most operations one transaction may hold (--max-txn-ops). */
  maxTxnOps: number;
  /** Period of watch progress notifications (etcd: 10 minutes). */
  watchProgressNotifyIntervalMs: number;
  /**
   * Wraps every service's handlers once more, outermost (tracing, when it is on; absent, the
   * handlers are served as they are). Must return an implementation with the same methods.
   */
  wrapService?: ServiceWrapper;
  /** Counts every method's calls (grpc_server_* metrics); none when absent. */
  metrics?: GrpcMetrics;
}

/** A hook around a service's handlers, given its definition (paths, streaming kinds). */
export type ServiceWrapper = (definition: ServiceDefinition, implementation: UntypedServiceImplementation) => UntypedServiceImplementation;

/**
 * Pairs a definition with its implementation (the compiler checks that they name the same
 * methods), refused as etcd's interceptors refuse calls to a learner or, when they ask for one, to a
 * member without a leader (member-gate.ts).
 */
function entry<I extends UntypedServiceImplementation>(definition: ServiceDefinition<I>, implementation: I, member: MemberGateState, options: ServiceRegistryOptions): ServiceEntry {
  // Innermost first: counting (grpc_server_*), the member gate, then the optional wrapper (tracing).
  const counted = options.metrics === undefined ? implementation : options.metrics.instrument(definition, implementation);
  const gated = gateMember(definition, counted, member);
  return { definition, implementation: options.wrapService === undefined ? gated : options.wrapService(definition, gated) };
}

export function serviceRegistry(server: EtcdServer, options: ServiceRegistryOptions, logger: Logger): ServiceRegistry {
  // Every response's header, through the generated encoders of the responses (idempotent).
  installResponseHeaderEncoder();
  // Lock and Election run their recipes through the member as its own client.
  const local = new LocalClient({ maxTxnOps: options.maxTxnOps }, server, logger);
  // As etcd: a learner is this member listed in the membership as one. Asked on every call, so
  // the answer is kept until the membership changes.
  let seenChanges = -1;
  let isLearner = false;
  const learner: MemberGateState = {
    get isLearner() {
      const membership = server.membership;
      if (membership.changes !== seenChanges) {
        seenChanges = membership.changes;
        isLearner = membership.get(server.memberId)?.isLearner === true;
      }
      return isLearner;
    },
    get hasLeader() {
      return server.leader !== 0n;
    },
    onLeaderLongLost: (listener) => server.onLeaderLongLost(listener),
  };
  return [
    entry(KVService, kvService(server, { maxTxnOps: options.maxTxnOps }, logger), learner, options),
    entry(LeaseService, leaseService(server, logger), learner, options),
    entry(ClusterService, clusterService(server, logger), learner, options),
    entry(MaintenanceService, maintenanceService(server, logger), learner, options),
    entry(AuthService, authService(server, logger), learner, options),
    entry(WatchService, watchService(server, { progressNotifyIntervalMs: options.watchProgressNotifyIntervalMs }, logger), learner, options),
    entry(LockService, lockService(local, logger), learner, options),
    entry(ElectionService, electionService(local, logger), learner, options),
  ];
}
