/**
 * Randomised test: the lessor against a plain model of etcd 3.4's lease rules (linear scans, no
 * heaps), over random grants, revokes, attaches, renewals, leadership changes, clock jumps,
 * checkpoints and restarts. Replays from SEED=; RUNS= sets the number of runs.
 */
import { describe, expect, it } from "vitest";
import {
  ErrLeaseExists,
  ErrLeaseExpired,
  ErrLeaseNotFound,
  ErrLeaseTTLTooLarge,
  ErrNotPrimary,
  Lessor,
  MAX_LEASE_TTL_SECONDS,
  type LeaseCheckpoint,
} from "../../src/lease/index.js";
import { FakeClock, MemoryLeasePersistence, seededRandom, testSeed } from "./fakes.js";

interface ModelLease {
  id: bigint;
  ttl: number;
  checkpoint: number;
  expiryMs: number;
  keys: Set<string>;
  /** When expiredLeases() next reports it (primary only). */
  dueMs: number | undefined;
  /** When its next checkpoint is due (primary, checkpoints enabled). */
  checkpointMs: number | undefined;
}

interface Config {
  minTtl: number;
  retryMs: number;
  intervalMs: number;
  enableCheckpoints: boolean;
  persistCheckpoints: boolean;
}

class Model {
  leases = new Map<bigint, ModelLease>();
  keyOwner = new Map<string, bigint>();
  records = new Map<bigint, { id: bigint; ttlSeconds: number; remainingTtlSeconds: number }>();
  pendingClears = new Set<bigint>();
  primary = false;

  constructor(
    readonly config: Config,
    readonly clock: FakeClock,
  ) {}

  private countdown(lease: ModelLease): number {
    return lease.checkpoint > 0 ? lease.checkpoint : lease.ttl;
  }

  private schedule(lease: ModelLease): void {
    if (this.config.enableCheckpoints && this.countdown(lease) > Math.trunc(this.config.intervalMs / 1000)) {
      lease.checkpointMs = this.clock.nowMs() + this.config.intervalMs;
    }
  }

  private restart(lease: ModelLease, extendMs: number): void {
    lease.expiryMs = this.clock.nowMs() + extendMs + this.countdown(lease) * 1000;
    lease.dueMs = lease.expiryMs;
    this.schedule(lease);
  }

  grant(id: bigint, ttl: number): string | undefined {
    if (id === 0n) return "not found";
    if (ttl > MAX_LEASE_TTL_SECONDS) return "too large";
    if (this.leases.has(id)) return "exists";
    const lease: ModelLease = {
      id,
      ttl: Math.max(ttl, this.config.minTtl),
      checkpoint: 0,
      expiryMs: Infinity,
      keys: new Set(),
      dueMs: undefined,
      checkpointMs: undefined,
    };
    this.leases.set(id, lease);
    this.records.set(id, { id, ttlSeconds: lease.ttl, remainingTtlSeconds: 0 });
    if (this.primary) this.restart(lease, 0);
    return undefined;
  }

  revoke(id: bigint): string[] | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined) return undefined;
    this.leases.delete(id);
    this.records.delete(id);
    this.pendingClears.delete(id);
    for (const key of lease.keys) if (this.keyOwner.get(key) === id) this.keyOwner.delete(key);
    return [...lease.keys].sort((a, b) => Buffer.compare(Buffer.from(a, "latin1"), Buffer.from(b, "latin1")));
  }

  attach(id: bigint, keys: string[]): boolean {
    const lease = this.leases.get(id);
    if (lease === undefined) return false;
    for (const key of keys) {
      const owner = this.keyOwner.get(key);
      if (owner !== undefined && owner !== id) this.leases.get(owner)?.keys.delete(key);
      lease.keys.add(key);
      this.keyOwner.set(key, id);
    }
    return true;
  }

  detach(id: bigint, keys: string[]): boolean {
    const lease = this.leases.get(id);
    if (lease === undefined) return false;
    for (const key of keys) {
      if (lease.keys.delete(key) && this.keyOwner.get(key) === id) this.keyOwner.delete(key);
    }
    return true;
  }

  renew(id: bigint): number | string {
    if (!this.primary) return "not primary";
    const lease = this.leases.get(id);
    if (lease === undefined) return "not found";
    const nowMs = this.clock.nowMs();
    if (lease.expiryMs <= nowMs) return "expired";
    if (lease.checkpoint > 0) this.pendingClears.add(id);
    lease.expiryMs = nowMs + lease.ttl * 1000;
    lease.dueMs = lease.expiryMs;
    return lease.ttl;
  }

  promote(extendMs: number): void {
    this.primary = true;
    for (const lease of this.leases.values()) this.restart(lease, extendMs);
  }

  demote(): void {
    this.primary = false;
    this.pendingClears.clear();
    for (const lease of this.leases.values()) {
      lease.expiryMs = Infinity;
      lease.dueMs = undefined;
      lease.checkpointMs = undefined;
    }
  }

  private earliest(field: "dueMs" | "checkpointMs"): ModelLease | undefined {
    let best: ModelLease | undefined;
    for (const lease of this.leases.values()) {
      const time = lease[field];
      if (time === undefined || time > this.clock.nowMs()) continue;
      if (best === undefined || time < best[field]! || (time === best[field] && lease.id < best.id)) best = lease;
    }
    return best;
  }

  expiredLeases(limit: number): bigint[] {
    const out: bigint[] = [];
    if (!this.primary) return out;
    while (out.length < limit) {
      const lease = this.earliest("dueMs");
      if (lease === undefined) break;
      lease.dueMs = this.clock.nowMs() + this.config.retryMs;
      out.push(lease.id);
    }
    return out;
  }

  checkpoints(limit: number): LeaseCheckpoint[] {
    const out: LeaseCheckpoint[] = [];
    if (!this.primary) return out;
    for (const id of this.pendingClears) {
      if (out.length >= limit) return out;
      this.pendingClears.delete(id);
      if ((this.leases.get(id)?.checkpoint ?? 0) > 0) out.push({ id, remainingTtlSeconds: 0 });
    }
    if (!this.config.enableCheckpoints) return out;
    const nowMs = this.clock.nowMs();
    let popsLeft = limit + 1000;
    while (out.length < limit && popsLeft > 0) {
      const lease = this.earliest("checkpointMs");
      if (lease === undefined) break;
      lease.checkpointMs = undefined;
      popsLeft -= 1;
      if (lease.expiryMs <= nowMs) continue;
      const remaining = Math.ceil((lease.expiryMs - nowMs) / 1000);
      if (remaining >= lease.ttl) continue;
      out.push({ id: lease.id, remainingTtlSeconds: remaining });
    }
    return out;
  }

  applyCheckpoint(id: bigint, remaining: number): void {
    const lease = this.leases.get(id);
    if (lease === undefined) return;
    lease.checkpoint = remaining;
    if (remaining <= 0) this.pendingClears.delete(id);
    if (this.config.persistCheckpoints) this.records.set(id, { id, ttlSeconds: lease.ttl, remainingTtlSeconds: remaining });
    if (this.primary) this.schedule(lease);
  }

  /** A restart: only the records survive; keys come back from the KV store (kept here). */
  restartProcess(): void {
    const keysById = new Map([...this.leases].map(([id, lease]) => [id, lease.keys]));
    this.leases = new Map();
    for (const record of this.records.values()) {
      this.leases.set(record.id, {
        id: record.id,
        ttl: Math.max(record.ttlSeconds, this.config.minTtl),
        checkpoint: record.remainingTtlSeconds,
        expiryMs: Infinity,
        keys: keysById.get(record.id) ?? new Set(),
        dueMs: undefined,
        checkpointMs: undefined,
      });
    }
    this.primary = false;
    this.pendingClears.clear();
  }
}

function errorName(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    if (error instanceof ErrLeaseNotFound) return "not found";
    if (error instanceof ErrLeaseExists) return "exists";
    if (error instanceof ErrLeaseTTLTooLarge) return "too large";
    if (error instanceof ErrNotPrimary) return "not primary";
    if (error instanceof ErrLeaseExpired) return "expired";
    throw error;
  }
}

/** What the runs exercised, so that a weakened generator shows up as a failure. */
const seen = new Map<string, number>();
function note(what: string): void {
  seen.set(what, (seen.get(what) ?? 0) + 1);
}

const KEY_POOL = ["a", "b", "ab", "\u0000", "\u00ff", "k1", "k2", "zz"];

async function runOnce(seed: number, steps: number): Promise<void> {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const int = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  const config: Config = {
    minTtl: int(1, 5),
    retryMs: pick([500, 1000, 3000]),
    intervalMs: pick([2000, 5000, 10_000]),
    enableCheckpoints: random() < 0.7,
    persistCheckpoints: random() < 0.5,
  };
  const clock = new FakeClock();
  const persistence = new MemoryLeasePersistence();
  const newLessor = () =>
    new Lessor(
      {
        minTtlSeconds: config.minTtl,
        expiredLeasesRetryIntervalMs: config.retryMs,
        checkpointIntervalMs: config.intervalMs,
        enableCheckpoints: config.enableCheckpoints,
        persistCheckpoints: config.persistCheckpoints,
      },
      { persistence, clock },
    );
  let lessor = newLessor();
  const model = new Model(config, clock);
  const randomId = (): bigint => BigInt(int(-1, 15));
  const randomKeys = (): string[] => KEY_POOL.filter(() => random() < 0.3);

  for (let step = 0; step < steps; step++) {
    const choice = random();
    let op = "";
    if (choice < 0.18) {
      const id = randomId();
      const roll = random();
      const ttl = roll < 0.03 ? MAX_LEASE_TTL_SECONDS + 1 : roll < 0.05 ? MAX_LEASE_TTL_SECONDS : int(-1, 25);
      op = `grant(${id}, ${ttl})`;
      const expected = model.grant(id, ttl);
      expect(errorName(() => lessor.grant(id, ttl)), op).toBe(expected);
      note(`grant: ${expected ?? "ok"}`);
    } else if (choice < 0.26) {
      const id = randomId();
      op = `revoke(${id})`;
      const expected = model.revoke(id);
      if (expected === undefined) expect(errorName(() => lessor.revoke(id)), op).toBe("not found");
      else expect(lessor.revoke(id).map((key) => key.toString("latin1")), op).toEqual(expected);
      if (expected !== undefined && expected.length > 1) note("revoke with keys");
    } else if (choice < 0.36) {
      const id = randomId();
      const keys = randomKeys();
      op = `attach(${id}, ${JSON.stringify(keys)})`;
      const buffers = keys.map((key) => Buffer.from(key, "latin1"));
      expect(errorName(() => lessor.attach(id, buffers)), op).toBe(model.attach(id, keys) ? undefined : "not found");
    } else if (choice < 0.42) {
      const id = randomId();
      const keys = randomKeys();
      op = `detach(${id}, ${JSON.stringify(keys)})`;
      const buffers = keys.map((key) => Buffer.from(key, "latin1"));
      expect(errorName(() => lessor.detach(id, buffers)), op).toBe(model.detach(id, keys) ? undefined : "not found");
    } else if (choice < 0.54) {
      const id = randomId();
      op = `renew(${id})`;
      const expected = model.renew(id);
      let actual: number | string;
      try {
        actual = lessor.renew(id);
      } catch {
        actual = errorName(() => lessor.renew(id))!;
      }
      expect(actual, op).toBe(expected);
      note(`renew: ${typeof expected === "number" ? "ok" : expected}`);
    } else if (choice < 0.58) {
      const extendMs = pick([0, 500, 2000]);
      op = `promote(${extendMs})`;
      lessor.promote(extendMs);
      model.promote(extendMs);
    } else if (choice < 0.61) {
      op = "demote()";
      lessor.demote();
      model.demote();
    } else if (choice < 0.76) {
      const roll = random();
      // Boundary-sized steps hit expiries and retry/checkpoint times exactly.
      const ms =
        roll < 0.1
          ? int(5000, 30_000)
          : roll < 0.5
            ? pick([1, 999, 1000, config.retryMs - 1, config.retryMs, config.intervalMs])
            : int(0, 3000);
      op = `advance(${ms})`;
      clock.advance(ms);
      if (random() < 0.6) {
        // What the server's poll loop does after time passes.
        const limit = int(1, 4);
        op += `; expiredLeases(${limit})`;
        const expected = model.expiredLeases(limit);
        expect(lessor.expiredLeases(limit), op).toEqual(expected);
        if (expected.length > 0) note("expired reported after advance");
      }
    } else if (choice < 0.84) {
      const limit = int(1, 4);
      op = `expiredLeases(${limit})`;
      const expected = model.expiredLeases(limit);
      expect(lessor.expiredLeases(limit), op).toEqual(expected);
      if (expected.length > 0) note("expired reported");
      if (expected.length === limit) note("expired limit reached");
    } else if (choice < 0.91) {
      const limit = int(1, 4);
      op = `checkpoints(${limit})`;
      const expected = model.checkpoints(limit);
      const actual = lessor.checkpoints(limit);
      expect(actual, op).toEqual(expected);
      if (expected.some((cp) => cp.remainingTtlSeconds > 0)) note("checkpoint reported");
      if (expected.some((cp) => cp.remainingTtlSeconds === 0)) note("checkpoint clear reported");
      // The leader proposes them; usually they get applied.
      if (random() < 0.8) {
        for (const cp of actual) {
          lessor.applyCheckpoint(cp.id, cp.remainingTtlSeconds);
          model.applyCheckpoint(cp.id, cp.remainingTtlSeconds);
        }
      }
    } else if (choice < 0.96) {
      const id = randomId();
      const remaining = int(0, 30);
      op = `applyCheckpoint(${id}, ${remaining})`;
      lessor.applyCheckpoint(id, remaining);
      model.applyCheckpoint(id, remaining);
    } else {
      op = "restart";
      lessor.stop();
      lessor = newLessor();
      await lessor.recover();
      model.restartProcess();
      if ([...model.leases.values()].some((lease) => lease.checkpoint > 0)) note("restart with checkpoint");
      for (const lease of model.leases.values()) {
        lessor.attach(
          lease.id,
          [...lease.keys].map((key) => Buffer.from(key, "latin1")),
        );
      }
    }
    compare(lessor, model, persistence, `step ${step}: ${op}`);
  }
}

function compare(lessor: Lessor, model: Model, persistence: MemoryLeasePersistence, where: string): void {
  const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "latin1"), Buffer.from(b, "latin1"));
  const actual = {
    primary: lessor.isPrimary(),
    leases: lessor.leases().map((lease) => ({
      id: lease.id,
      ttl: lease.ttlSeconds,
      checkpoint: lease.checkpointedRemainingTtlSeconds,
      expiryMs: lease.expiryMs,
      keys: lease.keys().map((key) => key.toString("latin1")),
    })),
    owners: KEY_POOL.map((key) => lessor.leaseOfKey(Buffer.from(key, "latin1"))),
    records: new Map(persistence.records),
  };
  const expected = {
    primary: model.primary,
    leases: [...model.leases.values()]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((lease) => ({
        id: lease.id,
        ttl: lease.ttl,
        checkpoint: lease.checkpoint,
        expiryMs: lease.expiryMs,
        keys: [...lease.keys].sort(byBytes),
      })),
    owners: KEY_POOL.map((key) => model.keyOwner.get(key) ?? 0n),
    records: model.records,
  };
  expect(actual, where).toEqual(expected);
}

describe("lessor against a model", () => {
  it("agrees on random histories (SEED=, RUNS=)", async () => {
    const runs = Number(process.env["RUNS"] ?? 40);
    const baseSeed = testSeed();
    for (let run = 0; run < runs; run++) {
      const seed = (baseSeed + run) >>> 0;
      try {
        await runOnce(seed, 500);
      } catch (error) {
        console.error(`seed=${seed}`);
        throw error;
      }
    }
    if (runs >= 20) {
      for (const what of [
        "grant: ok",
        "grant: exists",
        "grant: not found",
        "grant: too large",
        "renew: ok",
        "renew: expired",
        "renew: not primary",
        "renew: not found",
        "expired reported",
        "expired limit reached",
        "checkpoint reported",
        "checkpoint clear reported",
        "revoke with keys",
        "restart with checkpoint",
      ]) {
        expect(seen.get(what) ?? 0, `exercised: ${what}`).toBeGreaterThan(0);
      }
    }
  });
});
