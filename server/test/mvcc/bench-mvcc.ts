/**
 * MVCC store micro-benchmark: puts/s (one txn and one backend batch per put) and range ops/s at
 * head. Run: `npx tsx server/test/mvcc/bench-mvcc.ts` (PUTS=n, KEYS=n, VALUE_BYTES=n, READS=n).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { MvccStore } from "../../src/mvcc/kv-store.js";
import { systemClock } from "../../src/pkg/clock.js";

const PUTS = Number(process.env.PUTS ?? 100_000);
const KEYS = Number(process.env.KEYS ?? 10_000);
const VALUE_BYTES = Number(process.env.VALUE_BYTES ?? 256);
const READS = Number(process.env.READS ?? 200_000);

function key(i: number): Buffer {
  return Buffer.from(`key-${String(i).padStart(8, "0")}`);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "etcd-ts-mvcc-bench-"));
  const backend = await Backend.open(dir);
  const store = await MvccStore.open(backend, {}, { clock: systemClock });
  const value = Buffer.alloc(VALUE_BYTES, 0x61);
  let ci = 0;
  let seed = 12345;
  const rand = (n: number) => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };

  // preload every key once (not measured)
  for (let i = 0; i < KEYS; i += 100) {
    const txn = store.write();
    for (let j = i; j < Math.min(KEYS, i + 100); j++) txn.put(key(j), value, 0n);
    const batch = backend.batch();
    txn.end(batch);
    batch.setConsistentIndex(++ci);
    await backend.write(batch);
  }

  // 1. sequential: the apply loop awaits every batch
  let t0 = performance.now();
  for (let i = 0; i < PUTS; i++) {
    const txn = store.write();
    txn.put(key(rand(KEYS)), value, 0n);
    const batch = backend.batch();
    txn.end(batch);
    batch.setConsistentIndex(++ci);
    await backend.write(batch);
  }
  let ms = performance.now() - t0;
  console.log(`put, 1 txn + 1 batch each, awaited:      ${Math.round(PUTS / (ms / 1000))} puts/s (${PUTS} puts, ${KEYS} keys, ${VALUE_BYTES}-byte values)`);

  // 2. pipelined: batches submitted without waiting (group commit merges them)
  t0 = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < PUTS; i++) {
    const txn = store.write();
    txn.put(key(rand(KEYS)), value, 0n);
    const batch = backend.batch();
    txn.end(batch);
    batch.setConsistentIndex(++ci);
    inflight.push(backend.write(batch));
    if (inflight.length >= 256) await inflight.shift();
  }
  await Promise.all(inflight);
  ms = performance.now() - t0;
  console.log(`put, 1 txn + 1 batch each, pipelined:    ${Math.round(PUTS / (ms / 1000))} puts/s`);

  // 3. reads at head
  t0 = performance.now();
  for (let i = 0; i < READS; i++) {
    const r = await store.range(key(rand(KEYS)), undefined, {});
    if (r.count !== 1) throw new Error("missing key");
  }
  ms = performance.now() - t0;
  console.log(`range single key at head (cached):       ${Math.round(READS / (ms / 1000))} ops/s`);

  t0 = performance.now();
  const READS_CONC = READS;
  const batchOf = 64;
  for (let i = 0; i < READS_CONC; i += batchOf) {
    const ps: Promise<unknown>[] = [];
    for (let j = 0; j < batchOf; j++) ps.push(store.range(key(rand(KEYS)), undefined, {}));
    await Promise.all(ps);
  }
  ms = performance.now() - t0;
  console.log(`range single key at head, 64 concurrent: ${Math.round(READS_CONC / (ms / 1000))} ops/s`);

  t0 = performance.now();
  const RANGE_READS = Math.floor(READS / 10);
  for (let i = 0; i < RANGE_READS; i++) {
    const k = rand(KEYS - 20);
    const r = await store.range(key(k), key(k + 10), {});
    if (r.kvs.length !== 10) throw new Error("short range");
  }
  ms = performance.now() - t0;
  console.log(`range of 10 keys [k, k+10):              ${Math.round(RANGE_READS / (ms / 1000))} ops/s`);

  // 4. cold reads: reopen without cache
  await store.close();
  await backend.close();
  const backend2 = await Backend.open(dir);
  t0 = performance.now();
  const store2 = await MvccStore.open(backend2, { valueCacheBytes: 0, syncReadMissesMax: Number(process.env.SYNC_READS ?? 4) }, { clock: systemClock });
  ms = performance.now() - t0;
  console.log(`reopen (index rebuild of ${2 * PUTS} revisions): ${Math.round(ms)} ms`);
  t0 = performance.now();
  for (let i = 0; i < READS / 4; i++) await store2.range(key(rand(KEYS)), undefined, {});
  ms = performance.now() - t0;
  console.log(`range single key at head (no cache):     ${Math.round(READS / 4 / (ms / 1000))} ops/s`);
  t0 = performance.now();
  await store2.compact(store2.currentRevision - 1000);
  ms = performance.now() - t0;
  console.log(`compact (physical) of ~${2 * PUTS} revisions: ${Math.round(ms)} ms`);
  await store2.close();
  await backend2.close();
  await rm(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
