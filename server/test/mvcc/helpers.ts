import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { MvccStore, type MvccStoreDeps, type MvccStoreOptions } from "../../src/mvcc/kv-store.js";
import { systemClock } from "../../src/pkg/clock.js";
import type { Event, KeyValue } from "../../src/mvcc/key-value.js";

export const b = (s: string): Buffer => Buffer.from(s);
export const s = (x: Buffer): string => x.toString();

export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "etcd-ts-mvcc-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A store on a fresh backend in `dir`, plus helpers that run one write txn per call. */
export class Harness {
  private constructor(
    readonly dir: string,
    public backend: Backend,
    public store: MvccStore,
    private readonly options: MvccStoreOptions,
    private readonly deps: MvccStoreDeps,
  ) {}

  static async open(dir: string, options: MvccStoreOptions = {}, deps: MvccStoreDeps = { clock: systemClock }): Promise<Harness> {
    const backend = await Backend.open(dir);
    const store = await MvccStore.open(backend, options, deps);
    return new Harness(dir, backend, store, options, deps);
  }

  index = 0;

  async put(key: string, value: string, lease = 0n): Promise<KeyValue> {
    const txn = this.store.write();
    const r = txn.put(b(key), b(value), lease);
    await this.commit(txn);
    return r.kv;
  }

  async del(key: string, end?: string): Promise<number> {
    const txn = this.store.write();
    const n = txn.deleteRange(b(key), end === undefined ? undefined : end === "\0" ? Buffer.from([0]) : b(end)).length;
    await this.commit(txn);
    return n;
  }

  async commit(txn: ReturnType<MvccStore["write"]>): Promise<Event[]> {
    const batch = this.backend.batch();
    const events = txn.end(batch);
    batch.setConsistentIndex(++this.index);
    await this.backend.write(batch);
    return events;
  }

  async get(key: string, revision = 0): Promise<KeyValue | undefined> {
    return (await this.store.range(b(key), undefined, { revision })).kvs[0];
  }

  async reopen(options: MvccStoreOptions = this.options): Promise<void> {
    await this.store.close();
    await this.backend.close();
    this.backend = await Backend.open(this.dir);
    this.store = await MvccStore.open(this.backend, options, this.deps);
    this.index = this.backend.consistentIndex();
  }

  async close(): Promise<void> {
    await this.store.close();
    await this.backend.close();
  }
}

export function seedFromEnv(): number {
  const env = process.env.SEED;
  return env ? Number(env) : Math.floor(Math.random() * 2 ** 31);
}

export { seededUniform as rng } from "../../../test/harness/seeded-random.js";

export { ManualClock } from "../../src/pkg/clock.js";
