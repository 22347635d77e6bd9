/**
 * The gateway's routes (routes.ts): a bound method of a registered service runs that service's
 * own handler, a bound method of no registered service is left Unimplemented, and every binding
 * names its method's messages and streaming as the .proto files declare them.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { gatewayRoutes } from "../../../src/api/gateway/routes.js";
import type { ServiceEntry } from "../../../src/api/v3rpc/service-registry.js";
import {
  AuthService, ClusterService, KVService, LeaseService, MaintenanceService, WatchService,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import { ElectionService } from "@etcd-ts/proto/v3electionpb/v3election";
import { LockService } from "@etcd-ts/proto/v3lockpb/v3lock";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

/** A service whose handlers are distinct do-nothing functions. */
function entry(definition: ServiceDefinition): ServiceEntry {
  const implementation: UntypedServiceImplementation = {};
  for (const name of Object.keys(definition)) implementation[name] = () => undefined;
  return { definition, implementation };
}

interface RpcDeclaration {
  request: string;
  response: string;
  requestStream: boolean;
  responseStream: boolean;
}

/** The rpc declarations of the .proto files, by gRPC method path. */
function protoRpcs(): Map<string, RpcDeclaration> {
  const out = new Map<string, RpcDeclaration>();
  for (const file of ["etcdserverpb/rpc", "v3lockpb/v3lock", "v3electionpb/v3election"]) {
    const text = readFileSync(path.join(root, "proto", `${file}.proto`), "utf8");
    const pkg = /^package (\w+);/m.exec(text)![1]!;
    for (const [, service, body] of text.matchAll(/^service (\w+) \{([\s\S]*?)^\}/gm)) {
      for (const m of body!.matchAll(/rpc (\w+)\((stream )?(\w+)\) returns \((stream )?(\w+)\)/g)) {
        out.set(`/${pkg}.${service}/${m[1]}`, {
          request: `${pkg}.${m[3]}`, response: `${pkg}.${m[5]}`, requestStream: m[2] !== undefined, responseStream: m[4] !== undefined,
        });
      }
    }
  }
  return out;
}

describe("gateway routes", () => {
  it("every binding names its method's messages and streaming as the .proto declares them", () => {
    const all = [KVService, WatchService, LeaseService, ClusterService, MaintenanceService, AuthService, LockService, ElectionService];
    const routes = gatewayRoutes(all.map((d) => entry(d)));
    const rpcs = protoRpcs();
    expect(routes.unserved.size).toBe(0);
    expect(routes.served.size).toBe(48);
    for (const [p, route] of routes.served) {
      const rpc = rpcs.get(route.method.path);
      expect(rpc, `${p}: ${route.method.path} is declared`).toBeDefined();
      expect({ path: p, request: route.request, response: route.response }).toEqual({ path: p, request: rpc!.request, response: rpc!.response });
      const kind = rpc!.requestStream ? "bidi" : rpc!.responseStream ? "server-stream" : "unary";
      expect(route.kind, p).toBe(kind);
    }
  });

  it("serves the registered services with their own handlers and leaves the rest Unimplemented", () => {
    const registry = [KVService, LeaseService, ClusterService, MaintenanceService, WatchService].map((d) => entry(d));
    const routes = gatewayRoutes(registry);
    expect([...routes.served.keys()].sort()).toEqual([
      "cluster/member/add", "cluster/member/list", "cluster/member/promote", "cluster/member/remove", "cluster/member/update",
      "kv/compaction", "kv/deleterange", "kv/lease/leases", "kv/lease/revoke", "kv/lease/timetolive", "kv/put", "kv/range", "kv/txn",
      "lease/grant", "lease/keepalive", "lease/leases", "lease/revoke", "lease/timetolive",
      "maintenance/alarm", "maintenance/defragment", "maintenance/hash", "maintenance/snapshot", "maintenance/status",
      "maintenance/transfer-leadership", "watch",
    ]);
    expect(routes.served.get("kv/lease/revoke")!.handler).toBe(registry[1]!.implementation["leaseRevoke"]);
    expect(routes.served.get("kv/compaction")!.handler).toBe(registry[0]!.implementation["compact"]);
    expect(routes.served.get("watch")!.kind).toBe("bidi");
    expect(routes.served.get("maintenance/snapshot")!.kind).toBe("server-stream");
    expect(routes.unserved.size).toBe(23);
    expect(routes.unserved.get("auth/user/changepw")).toBe("/etcdserverpb.Auth/UserChangePassword");
    expect(routes.unserved.get("lock/unlock")).toBe("/v3lockpb.Lock/Unlock");
    expect(routes.unserved.get("election/observe")).toBe("/v3electionpb.Election/Observe");
  });
});
