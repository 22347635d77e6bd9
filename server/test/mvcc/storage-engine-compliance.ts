/**
 * The StorageEngine contract (server/src/mvcc/backend/engine.ts), written once and run against
 * every implementation: `describeStorageEngine(name, newDisk)`.
 *
 * Randomised cases take SEED= and print the seed when they fail.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BackendClosedError, type EngineOp, type EngineRange, type StorageEngine } from "../../src/mvcc/backend/engine.js";
import { SeededRandom, testSeed } from "../../../test/harness/seeded-random.js";

/** A disk an engine lives on, for one test. */
export interface EngineDisk {
  /** Opens an engine on this disk; the previous one must be closed (or killed). */
  open(): Promise<StorageEngine>;
  /**
   * A process opens an engine on this disk, writes `batches` in order without sync, and is killed
   * (no close). Returns once it is gone; the disk is then free to open.
   */
  writeAndKill(batches: EngineOp[][]): Promise<void>;
  /** Removes the disk (engines opened on it are closed by the test first). */
  destroy(): Promise<void>;
}

export const put = (key: string | Buffer, value: string | Buffer): EngineOp => ({
  type: "put",
  key: typeof key === "string" ? Buffer.from(key) : key,
  value: typeof value === "string" ? Buffer.from(value) : value,
  keyEncoding: "buffer",
  valueEncoding: "buffer",
});

export const del = (key: string | Buffer): EngineOp => ({
  type: "del",
  key: typeof key === "string" ? Buffer.from(key) : key,
  keyEncoding: "buffer",
  valueEncoding: "buffer",
});

/** Every entry of `range`, read with nextv chunks of `chunk`. */
export async function readAll(engine: StorageEngine, range: EngineRange = {}, chunk = 1000): Promise<Array<[string, string]>> {
  const it = engine.iterator(range);
  const out: Array<[string, string]> = [];
  try {
    for (let guard = 0; guard < 100_000; guard++) {
      const entries = await it.nextv(chunk);
      if (entries.length === 0) break;
      for (const [k, v] of entries) out.push([k.toString("latin1"), v === undefined ? "<none>" : v.toString("latin1")]);
    }
  } finally {
    await it.close();
  }
  return out;
}

/** A sorted model of the engine's contents (latin1 strings keep byte order under code-unit order). */
class Model {
  readonly map = new Map<string, string>();

  apply(ops: EngineOp[]): void {
    for (const op of ops) {
      const k = op.key.toString("latin1");
      if (op.type === "put") this.map.set(k, op.value!.toString("latin1"));
      else this.map.delete(k);
    }
  }

  range(r: EngineRange): Array<[string, string]> {
    const lo = (k: string): boolean =>
      r.gt !== undefined ? k > r.gt.toString("latin1") : r.gte !== undefined ? k >= r.gte.toString("latin1") : true;
    const hi = (k: string): boolean =>
      r.lt !== undefined ? k < r.lt.toString("latin1") : r.lte !== undefined ? k <= r.lte.toString("latin1") : true;
    let out = [...this.map.entries()].filter(([k]) => lo(k) && hi(k)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (r.reverse === true) out.reverse();
    if (r.limit !== undefined) out = out.slice(0, r.limit);
    if (r.values === false) out = out.map(([k]) => [k, "<none>"]);
    return out;
  }
}

const ALPHABET = [0x00, 0x01, 0x61, 0x62, 0x7f, 0x80, 0xff];

function randomKey(r: SeededRandom): Buffer {
  const n = r.int(1, 3);
  return Buffer.from(Array.from({ length: n }, () => ALPHABET[r.int(0, ALPHABET.length - 1)]!));
}

function randomRange(r: SeededRandom): EngineRange {
  const range: EngineRange = {};
  const lower = r.int(0, 2);
  if (lower === 1) range.gt = randomKey(r);
  if (lower === 2) range.gte = randomKey(r);
  const upper = r.int(0, 2);
  if (upper === 1) range.lt = randomKey(r);
  if (upper === 2) range.lte = randomKey(r);
  if (r.next() < 0.5) range.reverse = true;
  if (r.next() < 0.3) range.limit = r.int(0, 6);
  if (r.next() < 0.2) range.values = false;
  return range;
}

function show(range: EngineRange): string {
  return JSON.stringify(range, (_k, v: unknown) =>
    typeof v === "object" && v !== null && (v as { type?: string }).type === "Buffer" ? Buffer.from((v as { data: number[] }).data).toString("hex") : v,
  );
}

export function describeStorageEngine(name: string, newDisk: () => Promise<EngineDisk>): void {
  describe(`StorageEngine compliance: ${name}`, () => {
    let disk: EngineDisk;
    let engine: StorageEngine;

    beforeEach(async () => {
      disk = await newDisk();
      engine = await disk.open();
    });

    afterEach(async () => {
      await engine.close();
      await disk.destroy();
    });

    async function reopen(): Promise<void> {
      await engine.close();
      engine = await disk.open();
    }

    it("an empty engine has nothing", async () => {
      expect(await engine.get(Buffer.from("a"))).toBeUndefined();
      expect(engine.getSync(Buffer.from("a"))).toBeUndefined();
      expect(await engine.getMany([Buffer.from("a"), Buffer.from("b")])).toEqual([undefined, undefined]);
      expect(await readAll(engine)).toEqual([]);
    });

    it("puts, deletes and reads; a batch applies in order (the later op on a key wins)", async () => {
      await engine.writeBatch([put("a", "1"), put("b", "2"), put("c", "3")], { sync: false });
      await engine.writeBatch([del("b"), put("c", "33"), put("d", "4"), del("d"), del("e"), del("a"), put("a", "11")], { sync: false });
      expect((await engine.get(Buffer.from("a")))?.toString()).toBe("11");
      expect(await engine.get(Buffer.from("b"))).toBeUndefined();
      expect(engine.getSync(Buffer.from("c"))?.toString()).toBe("33");
      expect(engine.getSync(Buffer.from("d"))).toBeUndefined();
      const many = await engine.getMany([Buffer.from("c"), Buffer.from("x"), Buffer.from("a")]);
      expect(many.map((v) => v?.toString())).toEqual(["33", undefined, "11"]);
      expect(await readAll(engine)).toEqual([["a", "11"], ["c", "33"]]);
    });

    it("stores any bytes: empty values, zero and 0xff bytes, large values", async () => {
      const big = Buffer.alloc(1 << 20, 7);
      await engine.writeBatch([put(Buffer.from([0]), Buffer.alloc(0)), put(Buffer.from([0xff, 0]), big), put(Buffer.from([0x00, 0xff]), "z")], { sync: true });
      expect((await engine.get(Buffer.from([0])))?.length).toBe(0);
      expect((await engine.get(Buffer.from([0xff, 0])))?.equals(big)).toBe(true);
      expect((await readAll(engine, { values: false })).map(([k]) => Buffer.from(k, "latin1").toString("hex"))).toEqual(["00", "00ff", "ff00"]);
    });

    it("applies writes one after another in call order; concurrent writes each apply whole", async () => {
      for (let i = 0; i < 20; i++) await engine.writeBatch([put("k", String(i)), put(`k${i % 3}`, String(i))], { sync: i % 5 === 4 });
      expect((await engine.get(Buffer.from("k")))?.toString()).toBe("19");
      expect((await engine.getMany([0, 1, 2].map((j) => Buffer.from(`k${j}`)))).map((v) => v?.toString())).toEqual(["18", "19", "17"]);
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) writes.push(engine.writeBatch([put(`c${i}`, "1"), put("x", String(i)), put("y", String(i))], { sync: i % 10 === 9 }));
      await Promise.all(writes);
      expect((await readAll(engine, { gte: Buffer.from("c"), lt: Buffer.from("d") })).length).toBe(50);
      expect((await engine.get(Buffer.from("x")))?.toString()).toBe((await engine.get(Buffer.from("y")))?.toString());
    });

    it("iterates within bounds, in either direction, with limits and without values", async () => {
      await engine.writeBatch(["a", "b", "c", "d", "e"].map((k) => put(k, k.toUpperCase())), { sync: false });
      const keys = async (range: EngineRange): Promise<string> => (await readAll(engine, range)).map(([k]) => k).join("");
      const b = (s: string): Buffer => Buffer.from(s);
      expect(await keys({})).toBe("abcde");
      expect(await keys({ gte: b("b"), lt: b("d") })).toBe("bc");
      expect(await keys({ gt: b("b"), lte: b("d") })).toBe("cd");
      expect(await keys({ gt: b("bb"), lt: b("dd") })).toBe("cd");
      expect(await keys({ reverse: true })).toBe("edcba");
      expect(await keys({ reverse: true, lt: b("d") })).toBe("cba");
      expect(await keys({ reverse: true, lte: b("d"), gt: b("a") })).toBe("dcb");
      expect(await keys({ reverse: true, limit: 2 })).toBe("ed");
      expect(await keys({ limit: 0 })).toBe("");
      expect(await keys({ gte: b("c"), lt: b("c") })).toBe("");
      expect(await keys({ gt: b("d"), lt: b("b") })).toBe("");
      expect(await readAll(engine, { gte: b("d"), values: false })).toEqual([["d", "<none>"], ["e", "<none>"]]);
      // Small chunks: nextv hands out at most what is asked for and ends with an empty array.
      expect((await readAll(engine, { reverse: true, gte: b("b") }, 1)).map(([k]) => k).join("")).toBe("edcb");
      const it = engine.iterator({ limit: 3 });
      let total = 0;
      for (let guard = 0; guard < 10; guard++) {
        const got = await it.nextv(2);
        expect(got.length).toBeLessThanOrEqual(2);
        if (got.length === 0) break;
        total += got.length;
      }
      await it.close();
      expect(total).toBe(3);
    });

    it("an iterator reads the state as of its creation", async () => {
      await engine.writeBatch([put("a", "1"), put("b", "2"), put("c", "3")], { sync: false });
      const it = engine.iterator({});
      await engine.writeBatch([del("a"), put("b", "22"), put("bb", "new")], { sync: true });
      const first = await it.nextv(1);
      await engine.writeBatch([del("c"), put("d", "4")], { sync: false });
      const rest = await it.nextv(100);
      await it.close();
      expect([...first, ...rest].map(([k, v]) => `${k}=${v}`)).toEqual(["a=1", "b=2", "c=3"]);
      expect(await readAll(engine)).toEqual([["b", "22"], ["bb", "new"], ["d", "4"]]);
    });

    it("matches a sorted model under random batches and ranges (SEED=)", async () => {
      const seed = testSeed();
      try {
        const r = new SeededRandom(seed);
        const model = new Model();
        for (let round = 0; round < 60; round++) {
          const ops: EngineOp[] = [];
          for (let i = r.int(0, 8); i > 0; i--) {
            ops.push(r.next() < 0.7 ? put(randomKey(r), Buffer.from(`v${round}.${i}`)) : del(randomKey(r)));
          }
          await engine.writeBatch(ops, { sync: r.next() < 0.2 });
          model.apply(ops);
          for (let q = 0; q < 3; q++) {
            const range = randomRange(r);
            expect(await readAll(engine, range, r.int(1, 4)), show(range)).toEqual(model.range(range));
          }
          const k = randomKey(r);
          expect((await engine.get(k))?.toString("latin1")).toBe(model.map.get(k.toString("latin1")));
        }
      } catch (e) {
        console.error(`storage engine model test failed with SEED=${seed}`);
        throw e;
      }
    });

    it("returns buffers the caller owns", async () => {
      await engine.writeBatch([put("a", "value")], { sync: false });
      const v = (await engine.get(Buffer.from("a")))!;
      v.fill(0);
      engine.getSync(Buffer.from("a"))!.fill(0);
      (await engine.getMany([Buffer.from("a")]))[0]!.fill(0);
      const it = engine.iterator({});
      const [[k, v2]] = (await it.nextv(1)) as [[Buffer, Buffer]];
      await it.close();
      k.fill(0);
      v2.fill(0);
      expect((await engine.get(Buffer.from("a")))?.toString()).toBe("value");
    });

    it("keeps synced and unsynced writes across close and reopen", async () => {
      await engine.writeBatch([put("synced", "1")], { sync: true });
      await engine.writeBatch([put("unsynced", "2"), del("synced")], { sync: false });
      await engine.writeBatch([put("synced", "3")], { sync: false });
      await reopen();
      expect(await readAll(engine)).toEqual([["synced", "3"], ["unsynced", "2"]]);
    });

    it("keeps every batch a killed process wrote (the OS had them), each whole", async () => {
      await engine.close();
      const batches: EngineOp[][] = [];
      for (let i = 0; i < 20; i++) batches.push([put(`k${i}`, `v${i}`), del(`k${i - 1}`), put("last", String(i))]);
      await disk.writeAndKill(batches);
      engine = await disk.open();
      expect(await readAll(engine)).toEqual([["k19", "v19"], ["last", "19"]]);
    });

    it("reports sizes and compacts without losing data", async () => {
      const ops: EngineOp[] = [];
      for (let i = 0; i < 200; i++) ops.push(put(`k${String(i).padStart(3, "0")}`, Buffer.alloc(500, i)));
      await engine.writeBatch(ops, { sync: true });
      await engine.writeBatch(ops.slice(0, 100).map((op) => del(op.key)), { sync: false });
      await engine.compactRange(Buffer.from([0]), Buffer.from([0xff]));
      expect(await engine.sizeBytes()).toBeGreaterThan(0);
      const approx = await engine.approximateSize(Buffer.from([0]), Buffer.from([0xff]));
      expect(Number.isFinite(approx) && approx >= 0).toBe(true);
      expect((await readAll(engine, { values: false })).length).toBe(100);
    });

    it("refuses work once closed; close is idempotent", async () => {
      await engine.writeBatch([put("a", "1")], { sync: false });
      const open = engine.iterator({});
      const closedIt = engine.iterator({});
      await closedIt.close();
      await closedIt.close();
      await expect(closedIt.nextv(1)).rejects.toThrow();
      await engine.close();
      await engine.close();
      await expect(engine.writeBatch([put("b", "2")], { sync: false })).rejects.toBeInstanceOf(BackendClosedError);
      await expect(open.nextv(1)).rejects.toThrow();
      await expect(engine.get(Buffer.from("a"))).rejects.toThrow();
      expect(() => engine.getSync(Buffer.from("a"))).toThrow();
      expect(() => engine.iterator({})).toThrow();
      engine = await disk.open();
      expect(await readAll(engine)).toEqual([["a", "1"]]);
    });
  });
}
