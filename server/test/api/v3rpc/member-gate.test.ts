import { describe, expect, it } from "vitest";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { KVService, MaintenanceService, WatchService } from "@etcd-ts/proto/etcdserverpb/rpc";
import { gateMember } from "../../../src/api/v3rpc/member-gate.js";
import { gateState } from "./gate-state.js";

/** Calls one gated method; resolves with what reached the caller. */
function callUnary(impl: Record<string, unknown>, name: string, request: unknown): { err?: { code?: number; details?: string }; value?: unknown } {
  let out: { err?: { code?: number; details?: string }; value?: unknown } = {};
  (impl[name] as (call: unknown, cb: (e: unknown, v?: unknown) => void) => void)({ request }, (err, value) => {
    out = err ? { err: err as { code?: number; details?: string } } : { value };
  });
  return out;
}

/** What a gated streaming call reaches: its error events, and its listeners (to end it). */
function fakeStream(hasLeaderMd: boolean) {
  const errors: unknown[] = [];
  const handlers = new Map<string, () => void>();
  return {
    errors,
    metadata: { get: (k: string) => (k === "hasleader" && hasLeaderMd ? ["true"] : []) },
    emit: (ev: string, e: unknown) => ev === "error" && errors.push(e),
    once: (ev: string, f: () => void) => handlers.set(ev, f),
    fire: (ev: string) => handlers.get(ev)?.(),
  };
}

describe("member gate: learners", () => {
  const member = gateState(true);
  const kv = gateMember(KVService as ServiceDefinition, {
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
    const maint = gateMember(MaintenanceService as ServiceDefinition, {
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
    const watch = gateMember(WatchService as ServiceDefinition, { watch: () => (reached = true) } as UntypedServiceImplementation, member) as unknown as Record<string, (call: unknown) => void>;
    member.isLearner = true;
    const errors: unknown[] = [];
    watch.watch!({ emit: (ev: string, e: unknown) => ev === "error" && errors.push(e) });
    expect(reached).toBe(false);
    expect(errors[0]).toMatchObject({ code: 14, details: "etcdserver: rpc not supported for learner" });
  });
});

describe("member gate: calls that require a leader (clientv3's WithRequireLeader)", () => {
  const put = (_c: unknown, cb: (e: unknown, v?: unknown) => void) => cb(null, "put");

  it("refuses a unary call with hasleader while there is no leader, serves it without the metadata", () => {
    const member = gateState(false);
    const kv = gateMember(KVService as ServiceDefinition, { put } as UntypedServiceImplementation, member) as unknown as Record<string, unknown>;
    const withMd = (request: unknown) => ({ request, metadata: { get: (k: string) => (k === "hasleader" ? ["true"] : []) } });
    const call = (c: unknown) => {
      let out: { err?: unknown; value?: unknown } = {};
      (kv.put as (c: unknown, cb: (e: unknown, v?: unknown) => void) => void)(c, (err, value) => (out = err ? { err } : { value }));
      return out;
    };
    expect(call(withMd({})).value).toBe("put");
    member.hasLeader = false;
    expect(call(withMd({})).err).toMatchObject({ code: 14, details: "etcdserver: no leader" });
    expect(call({ request: {} }).value).toBe("put");
  });

  it("ends an open stream that asked for a leader once the leader is long lost, and only that one", () => {
    const member = gateState(false);
    const watch = gateMember(WatchService as ServiceDefinition, { watch: () => undefined } as UntypedServiceImplementation, member) as unknown as Record<string, (call: unknown) => void>;
    const asked = fakeStream(true);
    const plain = fakeStream(false);
    const finished = fakeStream(true);
    watch.watch!(asked);
    watch.watch!(plain);
    watch.watch!(finished);
    finished.fire("close");
    expect(member.listening()).toBe(1);
    member.loseLeaderLong();
    expect(asked.errors).toHaveLength(1);
    expect(asked.errors[0]).toMatchObject({ code: 14, details: "etcdserver: no leader" });
    expect(plain.errors).toEqual([]);
    expect(finished.errors).toEqual([]);
    // A new one is refused at once while there is still no leader.
    const late = fakeStream(true);
    watch.watch!(late);
    expect(late.errors[0]).toMatchObject({ code: 14, details: "etcdserver: no leader" });
  });
});
