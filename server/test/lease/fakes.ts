import type { Clock, LeasePersistence, LeaseRecord } from "../../src/lease/lessor.js";

/** A clock that only moves when told to. */
export class FakeClock implements Clock {
  constructor(public ms = 1_000_000) {}
  nowMs(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** LeasePersistence over a Map: what a committed lease bucket would hold. */
export class MemoryLeasePersistence implements LeasePersistence {
  readonly records = new Map<bigint, LeaseRecord>();
  puts = 0;
  deletes = 0;

  put(id: bigint, ttlSeconds: number, remainingTtlSeconds: number): void {
    this.puts += 1;
    this.records.set(id, { id, ttlSeconds, remainingTtlSeconds });
  }
  delete(id: bigint): void {
    this.deletes += 1;
    this.records.delete(id);
  }
  async loadAll(): Promise<LeaseRecord[]> {
    return [...this.records.values()].map((record) => ({ ...record }));
  }
}

export { seededUniform as seededRandom } from "../../../test/harness/seeded-random.js";

/** The seed from SEED=, or a fresh one. */
export function testSeed(): number {
  const fromEnv = process.env["SEED"];
  return fromEnv !== undefined && fromEnv !== "" ? Number(fromEnv) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

export function key(text: string): Buffer {
  return Buffer.from(text);
}
