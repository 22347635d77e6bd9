/**
 * The lessor's persistence: lease records in the backend's "lease" bucket, staged into the write
 * session of the entry being applied, so that a lease and the keys it guards change in one batch.
 *
 * Record: key = lease ID as 8 bytes big-endian (two's complement); value = 16 bytes, granted TTL
 * and remaining TTL in seconds as big-endian uint64.
 */
import type { LeasePersistence, LeaseRecord, Lessor } from "../lease/lessor.js";
import type { StorePort, WriteSession } from "./store-port.js";

export class LeaseRecords implements LeasePersistence {
  private session: WriteSession | undefined;

  constructor(private readonly store: StorePort) {}

  /** Routes the lessor's writes to `session` until unbind(). */
  bind(session: WriteSession): void {
    this.session = session;
  }

  unbind(): void {
    this.session = undefined;
  }

  private active(): WriteSession {
    // The lessor only writes while an entry is applied; anything else is a broken invariant.
    if (this.session === undefined) throw new Error("lease record written outside an apply step");
    return this.session;
  }

  put(id: bigint, ttlSeconds: number, remainingTtlSeconds: number): void {
    const value = Buffer.alloc(16);
    value.writeBigUInt64BE(BigInt(ttlSeconds), 0);
    value.writeBigUInt64BE(BigInt(Math.max(0, remainingTtlSeconds)), 8);
    this.active().stage("lease", leaseKey(id), value);
  }

  delete(id: bigint): void {
    this.active().stage("lease", leaseKey(id), undefined);
  }

  async loadAll(): Promise<LeaseRecord[]> {
    const out: LeaseRecord[] = [];
    for (const [k, v] of await this.store.loadRecords("lease")) {
      out.push({
        id: k.readBigInt64BE(0),
        ttlSeconds: Number(v.readBigUInt64BE(0)),
        remainingTtlSeconds: Number(v.readBigUInt64BE(8)),
      });
    }
    return out;
  }
}

function leaseKey(id: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(id);
  return b;
}

/**
 * Reloads the lessor from the store (start-up, or after a snapshot is installed): its leases from
 * the lease records, then their keys from the keys that name them (the store remembers each key's
 * lease). Rejects like Lessor.recover().
 */
export async function recoverLeases(lessor: Lessor, store: StorePort): Promise<void> {
  await lessor.recover();
  store.forEachLeasedKey((key, lease) => {
    if (lessor.lookup(lease) !== undefined) lessor.attach(lease, [key]);
  });
}
