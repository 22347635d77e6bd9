/**
 * The storage engines against their contract (storage-engine-compliance.ts) and the Backend on
 * each (backend-compliance.ts); then what only the in-memory disk can show: power loss.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ClassicLevelEngine } from "../../src/mvcc/backend/classic-level-engine.js";
import type { EngineOp } from "../../src/mvcc/backend/engine.js";
import { MemoryEngine, MemoryLevelStore } from "../../src/mvcc/backend/memory-engine.js";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { SeededRandom, testSeed } from "../../../test/harness/seeded-random.js";
import { describeBackend } from "./backend-compliance.js";
import { del, describeStorageEngine, put, readAll, type EngineDisk } from "./storage-engine-compliance.js";
import { tempDir } from "./helpers.js";
import { settles } from "../../../test/harness/settles.js";

const ENGINE_MODULE = fileURLToPath(new URL("../../src/mvcc/backend/classic-level-engine.ts", import.meta.url));

/** Runs a child process that opens a ClassicLevelEngine in `dir`, writes `batches` unsynced and SIGKILLs itself. */
function writeAndKillLevel(dir: string, batches: EngineOp[][]): Promise<void> {
  const script = `
    import { ClassicLevelEngine } from ${JSON.stringify(ENGINE_MODULE)};
    let input = "";
    for await (const chunk of process.stdin) input += chunk;
    const batches = JSON.parse(input);
    const engine = await ClassicLevelEngine.open({ dir: ${JSON.stringify(dir)} });
    for (const batch of batches) {
      await engine.writeBatch(batch.map(([type, key, value]) => ({
        type, key: Buffer.from(key, "hex"), value: value === null ? undefined : Buffer.from(value, "hex"),
        keyEncoding: "buffer", valueEncoding: "buffer",
      })), { sync: false });
    }
    process.kill(process.pid, "SIGKILL");
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["pipe", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (_code, signal) => (signal === "SIGKILL" ? resolve() : reject(new Error(`writer exited without being killed (${signal ?? _code})`))));
    child.stdin.end(JSON.stringify(batches.map((batch) => batch.map((op) => [op.type, op.key.toString("hex"), op.value?.toString("hex") ?? null]))));
  });
}

async function levelDisk(): Promise<EngineDisk> {
  const t = await tempDir();
  return {
    open: () => ClassicLevelEngine.open({ dir: t.dir }),
    writeAndKill: (batches) => writeAndKillLevel(t.dir, batches),
    destroy: t.cleanup,
  };
}

async function memoryDisk(): Promise<EngineDisk> {
  const store = new MemoryLevelStore();
  return {
    open: async () => MemoryEngine.open(store),
    writeAndKill: async (batches) => {
      const engine = MemoryEngine.open(store);
      for (const batch of batches) await engine.writeBatch(batch, { sync: false });
      store.kill();
    },
    destroy: async () => undefined,
  };
}

describeStorageEngine("ClassicLevelEngine", levelDisk);
describeStorageEngine("MemoryEngine", memoryDisk);
describeBackend("Backend on ClassicLevelEngine", levelDisk);
describeBackend("Backend on MemoryEngine", memoryDisk);

/** Whether `p` settles within a few turns of the event loop. */
describe("MemoryLevelStore: power loss", () => {
  it("keeps synced batches and loses unsynced ones; a synced batch carries the earlier ones", async () => {
    const store = new MemoryLevelStore();
    let engine = MemoryEngine.open(store);
    await engine.writeBatch([put("a", "1")], { sync: false });
    await engine.writeBatch([put("b", "2")], { sync: true });
    await engine.writeBatch([put("c", "3"), del("a")], { sync: false });
    expect(store.unsyncedBatches()).toBe(1);
    expect(store.crash()).toEqual({ keptBatches: 0, lostBatches: 1 });
    engine = MemoryEngine.open(store);
    expect(await readAll(engine)).toEqual([["a", "1"], ["b", "2"]]);
  });

  it("a background flush makes what was written durable", async () => {
    const store = new MemoryLevelStore();
    let engine = MemoryEngine.open(store);
    await engine.writeBatch([put("a", "1")], { sync: false });
    store.flush();
    await engine.writeBatch([put("b", "2")], { sync: false });
    store.crash();
    engine = MemoryEngine.open(store);
    expect(await readAll(engine)).toEqual([["a", "1"]]);
  });

  it("keeps a prefix of whole batches, never part of one (SEED=)", async () => {
    const seed = testSeed();
    try {
      const r = new SeededRandom(seed);
      const rng = (n: number): number => r.int(0, n - 1);
      const kept = new Set<number>();
      for (let round = 0; round < 40; round++) {
        const store = new MemoryLevelStore();
        let engine = MemoryEngine.open(store);
        const synced = r.int(0, 3);
        const total = synced + r.int(0, 6);
        for (let i = 0; i < total; i++) {
          // Each batch moves every key to its own number: any mix of two batches shows.
          await engine.writeBatch([put("x", String(i)), put("y", String(i)), put(`only${i}`, "1")], { sync: i < synced });
        }
        const outcome = store.crash(rng);
        expect(outcome.keptBatches + outcome.lostBatches).toBe(total - synced);
        engine = MemoryEngine.open(store);
        const survived = synced + outcome.keptBatches;
        kept.add(outcome.keptBatches);
        const expected: Array<[string, string]> = [];
        for (let i = 0; i < survived; i++) expected.push([`only${i}`, "1"]);
        if (survived > 0) expected.push(["x", String(survived - 1)], ["y", String(survived - 1)]);
        expect(await readAll(engine)).toEqual(expected);
        // What survived a crash is durable: a second crash keeps it.
        store.crash(rng);
        engine = MemoryEngine.open(store);
        expect(await readAll(engine)).toEqual(expected);
      }
      expect(kept.size).toBeGreaterThan(1);
    } catch (e) {
      console.error(`memory engine crash test failed with SEED=${seed}`);
      throw e;
    }
  });

  it("cuts off the engine that was open: nothing it does settles or reaches the disk", async () => {
    const store = new MemoryLevelStore();
    const old = MemoryEngine.open(store);
    await old.writeBatch([put("a", "1")], { sync: true });
    const it = old.iterator({});
    expect(() => MemoryEngine.open(store)).toThrow(/already open/);
    store.kill();
    expect(await settles(old.writeBatch([put("b", "2")], { sync: true }))).toBe(false);
    expect(await settles(old.get(Buffer.from("a")))).toBe(false);
    expect(await settles(it.nextv(1))).toBe(false);
    expect(await settles(old.close())).toBe(false);
    expect(() => old.getSync(Buffer.from("a"))).toThrow(/cut off/);
    const engine = MemoryEngine.open(store);
    expect(await readAll(engine)).toEqual([["a", "1"]]);
  });

  it("a Backend loses unsynced batches whole, its consistent index with them", async () => {
    const store = new MemoryLevelStore();
    let backend = await Backend.openOn(MemoryEngine.open(store));
    for (let i = 1; i <= 3; i++) {
      const batch = backend.batch();
      batch.put("key", Buffer.from(`k${i}`), Buffer.from("v"));
      batch.setConsistentIndex(i, 1);
      await (i === 2 ? backend.writeSynced(batch) : backend.write(batch));
    }
    store.crash();
    backend = await Backend.openOn(MemoryEngine.open(store));
    expect(backend.consistentIndex()).toBe(2);
    const keys: string[] = [];
    for await (const [k] of backend.iterate("key")) keys.push(k.toString());
    expect(keys).toEqual(["k1", "k2"]);
    await backend.close();
  });
});
