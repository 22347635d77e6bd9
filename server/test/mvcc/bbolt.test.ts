/**
 * BboltWriter / BboltReader: files written from random buckets read back identically and pass
 * the structural check; when the real etcdctl is installed, `etcdctl snapshot status` (real
 * bbolt: integrity check + hash over every bucket) accepts them and agrees with the hash
 * computed here. SEED= replays a run, RUNS= repeats the random case.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fnv1a64 } from "../../src/mvcc/backend/bbolt-format.js";
import { BboltReader } from "../../src/mvcc/backend/bbolt-reader.js";
import { BboltWriter, BboltWriterUsageError } from "../../src/mvcc/backend/bbolt-writer.js";
import { seededUniform as rng } from "../../../test/harness/seeded-random.js";

const ETCDCTL = process.env.ETCDCTL_BIN ?? "/usr/bin/etcdctl";
const dir = mkdtempSync(path.join(os.tmpdir(), "bbolt-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));


function seedFromEnv(): number {
  return process.env.SEED ? Number(process.env.SEED) >>> 0 : Math.floor(Math.random() * 0xffffffff);
}

type Buckets = Map<string, Array<[Buffer, Buffer]>>;

async function writeFile(file: string, buckets: Buckets, order?: string[]): Promise<void> {
  const w = await BboltWriter.create(file);
  for (const name of order ?? [...buckets.keys()]) {
    w.beginBucket(Buffer.from(name));
    for (const [k, v] of buckets.get(name)!) await w.put(k, v);
    await w.endBucket();
  }
  await w.finish();
}

function sortedUnique(pairs: Array<[Buffer, Buffer]>): Array<[Buffer, Buffer]> {
  const m = new Map<string, [Buffer, Buffer]>();
  for (const p of pairs) m.set(p[0].toString("hex"), p);
  return [...m.values()].sort((a, b) => Buffer.compare(a[0], b[0]));
}

function randomBuckets(next: () => number): Buckets {
  const bytes = (n: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
    return b;
  };
  const out: Buckets = new Map();
  const names = ["key", "meta", "lease", "members", "members_removed", "cluster", "alarm", "auth", "authUsers", "authRoles", "zz-big"];
  for (const name of names) {
    const shape = next();
    const n = shape < 0.2 ? 0 : shape < 0.5 ? Math.floor(next() * 10) : Math.floor(next() * 4000);
    const pairs: Array<[Buffer, Buffer]> = [];
    for (let i = 0; i < n; i++) {
      // etcdctl reads "key" bucket keys as revisions: at least 17 bytes there.
      const klen = (name === "key" ? 17 : 1) + Math.floor(next() * (next() < 0.01 ? 3000 : 40));
      const r = next();
      const vlen = r < 0.01 ? 4096 + Math.floor(next() * 40000) : r < 0.05 ? 0 : Math.floor(next() * 300);
      pairs.push([bytes(klen), bytes(vlen)]);
    }
    out.set(name, sortedUnique(pairs));
  }
  return out;
}

/** What `etcdctl snapshot status` computes: CRC-32C over bucket names, keys and values. */
function crc32c(chunks: Buffer[]): number {
  let crc = 0xffffffff;
  for (const c of chunks) {
    for (const byte of c) {
      crc ^= byte;
      for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    }
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function expectedStatus(buckets: Buckets): { hash: number; totalKey: number } {
  const chunks: Buffer[] = [];
  let totalKey = 0;
  for (const name of [...buckets.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    chunks.push(Buffer.from(name));
    for (const [k, v] of buckets.get(name)!) {
      chunks.push(k, v);
      totalKey++;
    }
  }
  return { hash: crc32c(chunks), totalKey };
}

describe("bbolt format", () => {
  it("FNV-1a 64 matches the published test vectors", () => {
    expect(fnv1a64(Buffer.alloc(0))).toBe(0xcbf29ce484222325n);
    expect(fnv1a64(Buffer.from("a"))).toBe(0xaf63dc4c8601ec8cn);
    expect(fnv1a64(Buffer.from("foobar"))).toBe(0x85944171f73967e8n);
  });
});

describe("BboltWriter + BboltReader", () => {
  it("an empty database has a root bucket and nothing else", async () => {
    const file = path.join(dir, "empty.db");
    await writeFile(file, new Map());
    const r = BboltReader.open(file);
    try {
      expect(r.check()).toEqual([]);
      expect(r.bucketNames()).toEqual([]);
      expect(r.meta.pageSize).toBe(4096);
      expect(Number(r.meta.highWaterPgid) * 4096).toBe(statSync(file).size);
    } finally {
      r.close();
    }
  });

  it("random buckets (empty, small, multi-level, overflow values) read back identically", async () => {
    const runs = Number(process.env.RUNS ?? 3);
    for (let run = 0; run < runs; run++) {
      const seed = seedFromEnv() + run;
      try {
        const next = rng(seed);
        const buckets = randomBuckets(next);
        // Buckets go in written order, not name order: the root must sort them.
        const order = [...buckets.keys()].sort(() => next() - 0.5);
        const file = path.join(dir, `random-${seed}.db`);
        await writeFile(file, buckets, order);
        const r = BboltReader.open(file);
        try {
          expect(r.check()).toEqual([]);
          expect(r.bucketNames().map((b) => b.toString())).toEqual([...buckets.keys()].sort());
          for (const [name, pairs] of buckets) {
            const got = r.entries(name)!;
            expect(got.length).toBe(pairs.length);
            for (let i = 0; i < pairs.length; i++) {
              if (!got[i]![0].equals(pairs[i]![0]) || !got[i]![1].equals(pairs[i]![1])) throw new Error(`bucket ${name} entry ${i} differs`);
            }
          }
        } finally {
          r.close();
        }
        if (existsSync(ETCDCTL)) {
          const status = JSON.parse(execFileSync(ETCDCTL, ["snapshot", "status", file, "-w", "json"], { env: { ...process.env, ETCDCTL_API: "3" } }).toString()) as {
            hash: number;
            totalKey: number;
            totalSize: number;
          };
          const want = expectedStatus(buckets);
          expect(status.hash).toBe(want.hash);
          expect(status.totalKey).toBe(want.totalKey);
          expect(status.totalSize).toBe(statSync(file).size);
        }
      } catch (e) {
        console.error(`seed=${seed}`);
        throw e;
      }
    }
  }, 120_000);

  it("a bucket of 200k etcd revision keys (several branch levels) reads back; real etcdctl finds its revision", async () => {
    const file = path.join(dir, "big.db");
    const w = await BboltWriter.create(file);
    w.beginBucket(Buffer.from("key"));
    const n = 200_000;
    for (let rev = 1; rev <= n; rev++) {
      const k = Buffer.alloc(17);
      k.writeBigUInt64BE(BigInt(rev), 0);
      k[8] = 0x5f;
      await w.put(k, Buffer.from(`value-${rev}`));
    }
    await w.endBucket();
    const info = await w.finish();
    expect(info.sizeBytes).toBe(statSync(file).size);
    const r = BboltReader.open(file);
    try {
      expect(r.check()).toEqual([]);
      const entries = r.entries("key")!;
      expect(entries.length).toBe(n);
      expect(entries[n - 1]![0].readBigUInt64BE(0)).toBe(BigInt(n));
    } finally {
      r.close();
    }
    if (existsSync(ETCDCTL)) {
      const status = JSON.parse(execFileSync(ETCDCTL, ["snapshot", "status", file, "-w", "json"], { env: { ...process.env, ETCDCTL_API: "3" } }).toString()) as {
        revision: number;
        totalKey: number;
      };
      expect(status).toMatchObject({ revision: n, totalKey: n });
    }
  }, 120_000);

  it("rejects out-of-order keys, duplicate buckets and puts outside a bucket", async () => {
    const w = await BboltWriter.create(path.join(dir, "bad.db"));
    await expect(w.put(Buffer.from("a"), Buffer.alloc(0))).rejects.toBeInstanceOf(BboltWriterUsageError);
    w.beginBucket(Buffer.from("b"));
    await w.put(Buffer.from("k2"), Buffer.alloc(0));
    await expect(w.put(Buffer.from("k2"), Buffer.alloc(0))).rejects.toBeInstanceOf(BboltWriterUsageError);
    await expect(w.put(Buffer.from("k1"), Buffer.alloc(0))).rejects.toBeInstanceOf(BboltWriterUsageError);
    await expect(w.put(Buffer.alloc(0), Buffer.alloc(0))).rejects.toBeInstanceOf(BboltWriterUsageError);
    await w.endBucket();
    expect(() => w.beginBucket(Buffer.from("b"))).toThrow(BboltWriterUsageError);
    await w.abort();
    await expect(w.finish()).rejects.toBeInstanceOf(BboltWriterUsageError);
  });
});
