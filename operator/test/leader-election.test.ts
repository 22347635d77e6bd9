import type { V1Lease } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { LeaseLeaderElector, type LeaseApi } from "../src/kube/leader-election.js";

/** A Lease store with the API server's optimistic concurrency (resourceVersion). */
class FakeLeases implements LeaseApi {
  lease: V1Lease | undefined;
  rv = 0;
  failing = false;
  /** Requests hang (an API server that accepts connections and never answers). */
  hanging = false;
  async read(): Promise<V1Lease | undefined> {
    if (this.hanging) return new Promise(() => {});
    if (this.failing) throw new Error("apiserver down");
    return this.lease === undefined ? undefined : JSON.parse(JSON.stringify(this.lease));
  }
  async create(_ns: string, lease: V1Lease): Promise<V1Lease> {
    if (this.failing) throw new Error("apiserver down");
    if (this.lease) throw new Error("409 AlreadyExists");
    this.lease = { ...JSON.parse(JSON.stringify(lease)), metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } };
    return this.lease!;
  }
  async replace(_ns: string, _n: string, lease: V1Lease): Promise<V1Lease> {
    if (this.failing) throw new Error("apiserver down");
    if (lease.metadata?.resourceVersion !== this.lease?.metadata?.resourceVersion) throw new Error("409 Conflict");
    this.lease = { ...JSON.parse(JSON.stringify(lease)), metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } };
    return this.lease!;
  }
}

function candidate(leases: FakeLeases, identity: string, clock: { t: number }, attemptTimeoutMs?: number) {
  const events: string[] = [];
  const e = new LeaseLeaderElector(
    { namespace: "ns", name: "op", identity, leaseDurationSeconds: 15, renewMs: 2000, ...(attemptTimeoutMs ? { attemptTimeoutMs } : {}) },
    { leases, now: () => new Date(clock.t), log: { info() {} } },
  );
  const cb = { onStartedLeading: () => events.push("start"), onStoppedLeading: () => events.push("stop") };
  return { e, events, tick: () => e.tryOnce(cb) };
}

describe("LeaseLeaderElector", () => {
  it("one of two replicas leads; the other takes over only after the holder stops renewing for the lease duration", async () => {
    const leases = new FakeLeases();
    const clock = { t: 1_000_000 };
    const a = candidate(leases, "a", clock);
    const b = candidate(leases, "b", clock);
    expect(await a.tick()).toBe(true);
    expect(await b.tick()).toBe(false);
    clock.t += 10_000;
    expect(await a.tick()).toBe(true);
    clock.t += 14_000;
    expect(await b.tick()).toBe(false); // a renewed 14 s ago
    clock.t += 2_000; // a silent for 16 s
    expect(await b.tick()).toBe(true);
    expect(leases.lease?.spec?.holderIdentity).toBe("b");
    expect(leases.lease?.spec?.leaseTransitions).toBe(1);
    expect(a.events).toEqual(["start"]);
    expect(b.events).toEqual(["start"]);
    // a comes back: it cannot renew (b holds it), and once its own lease time is up it stops leading.
    expect(await a.tick()).toBe(false);
    expect(a.events).toEqual(["start", "stop"]);
  });

  it("a leader that cannot reach the API server stops leading after the lease duration, not before", async () => {
    const leases = new FakeLeases();
    const clock = { t: 0 };
    const a = candidate(leases, "a", clock);
    await a.tick();
    leases.failing = true;
    clock.t += 10_000;
    expect(await a.tick()).toBe(false);
    expect(a.events).toEqual(["start"]);
    clock.t += 6_000;
    await a.tick();
    expect(a.events).toEqual(["start", "stop"]);
    leases.failing = false;
    expect(await a.tick()).toBe(true);
    expect(a.events).toEqual(["start", "stop", "start"]);
  });

  it("writes renewTime with microseconds (Kubernetes' MicroTime format)", async () => {
    const leases = new FakeLeases();
    const a = candidate(leases, "a", { t: Date.UTC(2026, 0, 1) });
    await a.tick();
    expect(JSON.stringify(leases.lease?.spec?.renewTime)).toBe('"2026-01-01T00:00:00.000000Z"');
  });

  it("an attempt the API server never answers counts as a failed renewal (bounded), so the leader still steps down in time", async () => {
    const leases = new FakeLeases();
    const clock = { t: 0 };
    const a = candidate(leases, "a", clock, 50);
    await a.tick();
    leases.hanging = true;
    clock.t += 16_000;
    expect(await a.tick()).toBe(false);
    expect(a.events).toEqual(["start", "stop"]);
  });

  it("release() after a clean stop hands the Lease over at once; a replica that does not hold it changes nothing", async () => {
    const leases = new FakeLeases();
    const clock = { t: 0 };
    const a = candidate(leases, "a", clock);
    const b = candidate(leases, "b", clock);
    await a.tick();
    await b.e.release(); // not leading: no write
    expect(leases.lease?.spec?.holderIdentity).toBe("a");
    a.e.stop();
    await a.e.release();
    expect(leases.lease?.spec?.holderIdentity).toBe("");
    expect(a.e.isLeader).toBe(false);
    clock.t += 1_000; // well within the lease duration
    expect(await b.tick()).toBe(true);
    expect(leases.lease?.spec?.holderIdentity).toBe("b");
  });
});
