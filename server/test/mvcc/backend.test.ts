/** Backend behaviour specific to LevelDB on disk; the contract both engines share is in backend-compliance.ts. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Backend, BackendFailedError, type BackendOptions } from "../../src/mvcc/backend/backend.js";
import { ClassicLevelEngine } from "../../src/mvcc/backend/classic-level-engine.js";
import { ManualClock } from "../../src/pkg/clock.js";
import { decodeKeyValue, encodeKeyValue, encodeTombstone, type KeyValue } from "../../src/mvcc/key-value.js";
import { KeyValue as PbKeyValue } from "@etcd-ts/proto/mvccpb/kv";
import { b, rng, seedFromEnv, tempDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
let backend: Backend;

beforeEach(async () => {
  const t = await tempDir();
  dir = t.dir;
  cleanup = t.cleanup;
  backend = await Backend.open(dir);
});

afterEach(async () => {
  await backend.close();
  await cleanup();
});

describe("Backend", () => {
  it("refuses a batch twice and fails closed after a LevelDB error", async () => {
    const batch = backend.batch();
    await backend.write(batch);
    await expect(backend.write(batch)).rejects.toThrow("already submitted");
    const bad = backend.batch();
    // A non-buffer key is refused before it reaches LevelDB, and the backend fails closed.
    (bad as unknown as { ops: unknown[] }).ops.push({ type: "put", key: null, value: b("x") });
    await expect(backend.write(bad)).rejects.toBeInstanceOf(BackendFailedError);
    await expect(backend.write(backend.batch())).rejects.toBeInstanceOf(BackendFailedError);
  });

  it("a synced empty batch queued behind others does not roll the consistent index back", async () => {
    const a = backend.batch();
    a.setConsistentIndex(5);
    const b1 = backend.batch();
    b1.put("lease", b("1"), b("x"));
    b1.setConsistentIndex(6);
    const w1 = backend.write(a);
    const w2 = backend.write(b1);
    const w3 = backend.writeSynced(backend.batch());
    await Promise.all([w1, w2, w3]);
    expect(backend.consistentIndex()).toBe(6);
    await backend.close();
    backend = await Backend.open(dir);
    expect(backend.consistentIndex()).toBe(6);
  });

  it("a group of batches writes each putMetaLatest key once, with the last batch's value", async () => {
    const writes: number[] = [];
    const engine = (backend as unknown as { engine: { writeBatch(ops: unknown[], o: unknown): Promise<void> } }).engine;
    const writeBatch = engine.writeBatch.bind(engine);
    engine.writeBatch = (ops, o) => {
      writes.push(ops.length);
      return writeBatch(ops, o);
    };
    const pending: Promise<void>[] = [];
    for (let i = 1; i <= 5; i++) {
      const batch = backend.batch();
      batch.put("lease", b(`k${i}`), b("x"));
      batch.putMetaLatest(b("idx"), b(`${i}`));
      batch.setConsistentIndex(i);
      pending.push(backend.write(batch));
    }
    await Promise.all(pending);
    // The writer starts on the next turn: all five share one write (5 puts + idx + consistent index).
    expect(writes).toEqual([7]);
    expect((await backend.get("meta", b("idx")))?.toString()).toBe("5");
    expect((await backend.get("lease", b("k4")))?.toString()).toBe("x");
    expect(backend.consistentIndex()).toBe(5);
  });

  it("refuses a consistent index that goes back", async () => {
    const a = backend.batch();
    a.setConsistentIndex(9);
    await backend.write(a);
    const back = backend.batch();
    back.setConsistentIndex(8);
    await expect(backend.write(back)).rejects.toThrow("consistent index going back");
    const same = backend.batch();
    same.setConsistentIndex(9);
    await backend.write(same);
  });

  it("writeSynced writes (and syncs) even an empty batch", async () => {
    const batch = backend.batch();
    batch.put("lease", b("9"), b("x"));
    batch.setConsistentIndex(11);
    await backend.write(batch);
    await backend.writeSynced(backend.batch());
    const synced = backend.batch();
    synced.put("lease", b("10"), b("y"));
    await backend.writeSynced(synced);
    await backend.close();
    backend = await Backend.open(dir);
    expect(backend.consistentIndex()).toBe(11);
    expect((await backend.get("lease", b("10")))?.toString()).toBe("y");
  });

  it("iterateAll copies a whole database into another one", async () => {
    const batch = backend.batch();
    batch.put("lease", b("1"), b("l"));
    batch.put("members", b("m"), b("x"));
    batch.setConsistentIndex(7);
    await backend.write(batch);
    const t = await tempDir();
    const copy = await Backend.open(t.dir);
    const restore = copy.batch();
    for await (const [k, v] of backend.iterateAll()) restore.putPrefixed(k, v);
    await copy.write(restore);
    await copy.close();
    const reopened = await Backend.open(t.dir);
    expect(reopened.consistentIndex()).toBe(7);
    expect((await reopened.get("members", b("m")))?.toString()).toBe("x");
    await reopened.close();
    await t.cleanup();
  });

  it("replace swaps every bucket for an image's, the consistent index and term last", async () => {
    const old = backend.batch();
    for (let i = 0; i < 12_000; i++) old.put("key", b(`old-${String(i).padStart(6, "0")}`), b("o"));
    old.put("lease", b("gone"), b("l"));
    old.setConsistentIndex(5, 2);
    await backend.write(old);

    const t = await tempDir();
    const source = await Backend.open(t.dir);
    const img = source.batch();
    for (let i = 0; i < 25_000; i++) img.put("key", b(`new-${String(i).padStart(6, "0")}`), Buffer.alloc(200, i % 251));
    img.put("members", b("m"), b("x"));
    img.setConsistentIndex(40, 3);
    await source.write(img);
    const expected: string[] = [];
    for await (const [k, v] of source.iterateAll()) expected.push(`${k.toString("hex")}=${v.toString("hex")}`);

    await backend.replace(source.iterateAll());
    expect(backend.consistentIndex()).toBe(40);
    expect(backend.consistentTerm()).toBe(3);
    const got: string[] = [];
    for await (const [k, v] of backend.iterateAll()) got.push(`${k.toString("hex")}=${v.toString("hex")}`);
    expect(got).toEqual(expected);
    // later writes go on from the image's consistent index
    const next = backend.batch();
    next.setConsistentIndex(41);
    await backend.write(next);
    await backend.close();
    backend = await Backend.open(dir);
    expect(backend.consistentIndex()).toBe(41);
    expect(await backend.get("lease", b("gone"))).toBeUndefined();
    await source.close();
    await t.cleanup();
  });

  it("replace with an image without a consistent index leaves none", async () => {
    const old = backend.batch();
    old.put("members", b("m"), b("x"));
    old.setConsistentIndex(9, 1);
    await backend.write(old);
    async function* image(): AsyncIterable<[Buffer, Buffer]> {
      yield [Buffer.from([0x03, 0x01]), b("lease")];
    }
    await backend.replace(image());
    expect(backend.consistentIndex()).toBe(0);
    expect(backend.consistentTerm()).toBe(0);
    expect(await backend.get("members", b("m"))).toBeUndefined();
    expect((await backend.get("lease", Buffer.from([0x01])))?.toString()).toBe("lease");
  });

  it("reports its size on disk", async () => {
    const batch = backend.batch();
    for (let i = 0; i < 100; i++) batch.put("key", b(`k${i}`), Buffer.alloc(1000, i));
    await backend.write(batch);
    expect(await backend.sizeBytes()).toBeGreaterThan(0);
    await backend.defragment();
    expect(await backend.sizeInUseBytes()).toBeGreaterThan(0);
  });
});

describe("Backend batch interval (writeLater)", () => {
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
  const turns = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) await turn();
  };
  /** A backend on `dir` with a manual clock, counting its LevelDB writes. */
  async function timed(options: BackendOptions = {}): Promise<{ backend: Backend; clock: ManualClock; writes: number[] }> {
    await backend.close();
    const clock = new ManualClock();
    const engine = await ClassicLevelEngine.open({ dir });
    const writes: number[] = [];
    const writeBatch = engine.writeBatch.bind(engine);
    engine.writeBatch = (ops, o) => {
      writes.push(ops.length);
      return writeBatch(ops, o);
    };
    backend = await Backend.openOn(engine, { batchIntervalMs: 100, clock, ...options });
    return { backend, clock, writes };
  }
  const entry = (be: Backend, index: number, value = "v"): ReturnType<Backend["batch"]> => {
    const batch = be.batch();
    batch.put("lease", b(`k${index}`), b(value));
    batch.setConsistentIndex(index);
    return batch;
  };

  it("waits for the interval, then writes every waiting batch as one, hooks in order", async () => {
    const { backend: be, clock, writes } = await timed();
    const order: number[] = [];
    const done: Promise<void>[] = [];
    for (let i = 1; i <= 5; i++) {
      const batch = entry(be, i);
      batch.onWritten(() => order.push(i));
      done.push(be.writeLater(batch));
    }
    await turns(5);
    expect(writes).toEqual([]);
    expect(be.consistentIndex()).toBe(0);
    expect(be.submittedConsistentIndex()).toBe(5);
    clock.advance(99);
    await turns(5);
    expect(writes).toEqual([]);
    clock.advance(1);
    await Promise.all(done);
    expect(writes).toEqual([6]); // five puts and the consistent index once
    expect(order).toEqual([1, 2, 3, 4, 5]);
    expect(be.consistentIndex()).toBe(5);
    expect(clock.pendingTimers()).toBe(0);
    expect((await be.get("lease", b("k3")))?.toString()).toBe("v");
  });

  it("write, flushed and expedite take the waiting batches along at once", async () => {
    const { backend: be, clock, writes } = await timed();
    const later = be.writeLater(entry(be, 1));
    await turns(3);
    expect(writes).toEqual([]);
    await be.write(entry(be, 2));
    await later;
    expect(writes).toEqual([3]);
    const again = be.writeLater(entry(be, 3));
    await be.flushed();
    await again;
    expect(writes.length).toBe(2);
    const third = be.writeLater(entry(be, 4));
    be.expedite();
    await third;
    expect(writes.length).toBe(3);
    expect(clock.pendingTimers()).toBe(0);
    expect(be.consistentIndex()).toBe(4);
  });

  it("starts at once when the waiting operations or bytes reach the limit, or a batch asks for haste", async () => {
    const { backend: be, writes } = await timed({ batchLimit: 3, batchBytesMax: 1000 });
    const two = [be.writeLater(entry(be, 1)), be.writeLater(entry(be, 2))];
    await turns(3);
    expect(writes).toEqual([]);
    await Promise.all([...two, be.writeLater(entry(be, 3))]);
    expect(writes).toEqual([4]);
    await be.writeLater(entry(be, 4, "x".repeat(1000)));
    expect(writes).toEqual([4, 2]);
    const urgent = entry(be, 5);
    urgent.expedite();
    await be.writeLater(urgent);
    expect(writes).toEqual([4, 2, 2]);
  });

  it("a full group starts a write at once", async () => {
    const { backend: be, writes } = await timed({ groupCommitBatchesMax: 3 });
    const two = [be.writeLater(entry(be, 1)), be.writeLater(entry(be, 2))];
    await turns(3);
    expect(writes).toEqual([]);
    await Promise.all([...two, be.writeLater(entry(be, 3))]);
    expect(writes).toEqual([4]);
  });

  it("interval 0 writes on the next turn, as write does", async () => {
    const { backend: be, writes } = await timed({ batchIntervalMs: 0 });
    await be.writeLater(entry(be, 1));
    expect(writes).toEqual([2]);
  });

  it("close writes what waits; a reopened backend has it", async () => {
    const { backend: be, clock } = await timed();
    void be.writeLater(entry(be, 7, "kept"));
    await be.close();
    expect(clock.pendingTimers()).toBe(0);
    backend = await Backend.open(dir);
    expect(backend.consistentIndex()).toBe(7);
    expect((await backend.get("lease", b("k7")))?.toString()).toBe("kept");
  });

  it("a failed write rejects the waiting batches too, and stops the timer", async () => {
    const { backend: be, clock } = await timed();
    const first = be.writeLater(entry(be, 1));
    const bad = be.batch();
    (bad as unknown as { ops: unknown[] }).ops.push({ type: "put", key: "not a buffer", value: b("x") });
    const failed = be.writeLater(bad);
    clock.advance(100);
    await expect(first).rejects.toBeInstanceOf(BackendFailedError);
    await expect(failed).rejects.toBeInstanceOf(BackendFailedError);
    await expect(be.writeLater(entry(be, 2))).rejects.toBeInstanceOf(BackendFailedError);
    expect(clock.pendingTimers()).toBe(0);
  });
});

describe("KeyValue stored form", () => {
  it("is byte-identical to the protobuf encoding of mvccpb.KeyValue (seeded)", () => {
    const seed = seedFromEnv();
    const r = rng(seed);
    try {
      for (let i = 0; i < 500; i++) {
        const big = () => Math.floor(r() * (r() < 0.2 ? 2 ** 50 : 1000));
        const kv: KeyValue = {
          key: Buffer.from(Array.from({ length: 1 + Math.floor(r() * 20) }, () => Math.floor(r() * 256))),
          createRevision: big(),
          modRevision: big(),
          version: r() < 0.1 ? 0 : big(),
          value: Buffer.alloc(Math.floor(r() * 300), Math.floor(r() * 256)),
          lease: r() < 0.3 ? 0n : r() < 0.1 ? -BigInt(Math.floor(r() * 1e9)) : BigInt(Math.floor(r() * 2 ** 53)) * 997n,
        };
        const ours = encodeKeyValue(kv);
        const pb = Buffer.from(
          PbKeyValue.encode({
            key: kv.key,
            createRevision: BigInt(kv.createRevision),
            modRevision: BigInt(kv.modRevision),
            version: BigInt(kv.version),
            value: kv.value,
            lease: BigInt.asIntN(64, kv.lease),
          }).finish(),
        );
        expect(ours.toString("hex")).toBe(pb.toString("hex"));
        const back = decodeKeyValue(ours);
        expect(back).toEqual({ ...kv, lease: BigInt.asIntN(64, kv.lease) });
      }
    } catch (e) {
      console.error(`seed=${seed}`);
      throw e;
    }
  });

  it("stores a tombstone as a KeyValue holding only the key", () => {
    const t = encodeTombstone(b("abc"));
    expect(decodeKeyValue(t)).toEqual({ key: b("abc"), createRevision: 0, modRevision: 0, version: 0, value: Buffer.alloc(0), lease: 0n });
  });
});
