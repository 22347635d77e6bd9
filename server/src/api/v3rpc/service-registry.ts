/**
 * The gRPC services a member serves, as one list of {definition, implementation}: the gRPC server
 * adds every entry, and the JSON gateway routes its requests to the same implementations. A
 * service is served on both by adding it here.
 */
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { ClusterService, KVService, LeaseService, MaintenanceService, WatchService } from "@etcd-ts/proto/etcdserverpb/rpc";
import { LockService } from "@etcd-ts/proto/v3lockpb/v3lock";
import { ElectionService } from "@etcd-ts/proto/v3electionpb/v3election";
import type { EtcdServer } from "../../server/etcd-server.js";
import type { Logger } from "../../pkg/logger.js";
import { kvService } from "./kv-service.js";
import { leaseService } from "./lease-service.js";
import { clusterService } from "./cluster-service.js";
import { maintenanceService } from "./maintenance-service.js";
import { watchService } from "./watch-service.js";
import { LocalClient } from "./local-client.js";
import { lockService } from "./lock-service.js";
import { electionService } from "./election-service.js";
import { gateLearner, type LearnerState } from "./learner-gate.js";
import type { GrpcMetrics } from "./grpc-metrics.js";

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
  /** Counts every method's calls (grpc_server_* metrics); none when absent. */
  metrics?: GrpcMetrics;
}

/**
 * Pairs a definition with its implementation (the compiler checks that they name the same
 * methods), refused while the member is a learner as etcd refuses it (learner-gate.ts).
 */
function entry<I extends UntypedServiceImplementation>(definition: ServiceDefinition<I>, implementation: I, learner: LearnerState, metrics: GrpcMetrics | undefined): ServiceEntry {
  const counted = metrics === undefined ? implementation : metrics.instrument(definition, implementation);
  return { definition, implementation: gateLearner(definition, counted, learner) };
}

export function serviceRegistry(server: EtcdServer, options: ServiceRegistryOptions, logger: Logger): ServiceRegistry {
  // Lock and Election run their recipes through the member as its own client.
  const local = new LocalClient({ maxTxnOps: options.maxTxnOps }, server, logger);
  // As etcd: a learner is this member listed in the membership as one.
  const learner: LearnerState = {
    get isLearner() {
      return server.membership.get(server.memberId)?.isLearner === true;
    },
  };
  return [
    entry(KVService, kvService(server, { maxTxnOps: options.maxTxnOps }, logger), learner, options.metrics),
    entry(LeaseService, leaseService(server, logger), learner, options.metrics),
    entry(ClusterService, clusterService(server, logger), learner, options.metrics),
    entry(MaintenanceService, maintenanceService(server, logger), learner, options.metrics),
    entry(WatchService, watchService(server, { progressNotifyIntervalMs: options.watchProgressNotifyIntervalMs }, logger), learner, options.metrics),
    entry(LockService, lockService(local, logger), learner, options.metrics),
    entry(ElectionService, electionService(local, logger), learner, options.metrics),
  ];
}
