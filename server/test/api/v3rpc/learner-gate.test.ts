import { describe, expect, it } from "vitest";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { KVService, MaintenanceService, WatchService } from "@etcd-ts/proto/etcdserverpb/rpc";
import { gateLearner } from "../../../src/api/v3rpc/learner-gate.js";

/** Calls one gated method; resolves with what reached the caller. */
function callUnary(impl: Record<string, unknown>, name: string, request: unknown): { err?: { code?: number; details?: string }; value?: unknown } {
  let out: { err?: { code?: number; details?: string }; value?: unknown } = {};
  (impl[name] as (call: unknown, cb: (e: unknown, v?: unknown) => void) => void)({ request }, (err, value) => {
    out = err ? { err: err as { code?: number; details?: string } } : { value };
  });
  return out;
}

describe("learner gate", () => {
  const member = { isLearner: true };
  const kv = gateLearner(KVService as ServiceDefinition, {
    range: (_c: unknown, cb: (e: unknown, v?: unknown) => void) => cb(null, "range"),
    put: (_c: unknown, cb: (e: unknown, v?: unknown) => void) => cb(null, "put"),
  } as UntypedServiceImplementation, member) as unknown as Record<string, unknown>;

  it("refuses writes and linearizable reads on a learner with etcd's status, serves serializable reads", () => {
    member.isLearner = true;
    expect(callUnary(kv, "put", {}).err).toMatchObject({ code: 14, details: "etcdserver: rpc not supported for learner" });
    expect(callUnary(kv, "range", { serializable: false }).err).toMatchObject({ code: 14 });
    expect(callUnary(kv, "range", { serializable: true }).value).toBe("range");
  });

  it("serves Maintenance.Status on a learner, and everything once promoted", () => {
    const maint = gateLearner(MaintenanceService as ServiceDefinition, {
      status: (_c: unknown, cb: (e: unknown, v?: unknown) => void) => cb(null, "status"),
      alarm: (_c: unknown, cb: (e: unknown, v?: unknown) => void) => cb(null, "alarm"),
    } as UntypedServiceImplementation, member) as unknown as Record<string, unknown>;
    member.isLearner = true;
    expect(callUnary(maint, "status", {}).value).toBe("status");
    expect(callUnary(maint, "alarm", {}).err).toMatchObject({ code: 14 });
    member.isLearner = false;
    expect(callUnary(maint, "alarm", {}).value).toBe("alarm");
    expect(callUnary(kv, "put", {}).value).toBe("put");
  });

  it("refuses streams on a learner", () => {
    let reached = false;
    const watch = gateLearner(WatchService as ServiceDefinition, { watch: () => (reached = true) } as UntypedServiceImplementation, member) as unknown as Record<string, (call: unknown) => void>;
    member.isLearner = true;
    const errors: unknown[] = [];
    watch.watch!({ emit: (ev: string, e: unknown) => ev === "error" && errors.push(e) });
    expect(reached).toBe(false);
    expect(errors[0]).toMatchObject({ code: 14, details: "etcdserver: rpc not supported for learner" });
  });
});
