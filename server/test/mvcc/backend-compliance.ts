/**
 * The Backend's contract (server/src/mvcc/backend/backend.ts) on any storage engine, written once:
 * `describeBackend(name, newDisk)` opens the Backend with `Backend.openOn` on the disk's engines.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Backend, BackendClosedError, BackendFailedError, type IterateRange } from "../../src/mvcc/backend/backend.js";
import { MvccStore } from "../../src/mvcc/kv-store.js";
import { systemClock } from "../../src/pkg/clock.js";
import type { EngineDisk } from "./storage-engine-compliance.js";

const b = (s: string): Buffer => Buffer.from(s);

export function describeBackend(name: string, newDisk: () => Promise<EngineDisk>): void {
  describe(`Backend compliance: ${name}`, () => {
    let disk: EngineDisk;
    let backend: Backend;

    beforeEach(async () => {
      disk = await newDisk();
      backend = await Backend.openOn(await disk.open());
    });

    afterEach(async () => {
      await backend.close();
      await disk.destroy();
    });

    async function reopen(): Promise<void> {
      await backend.close();
      backend = await Backend.openOn(await disk.open());
    }

    async function keys(bucket: "auth" | "members" | "key", range?: IterateRange): Promise<string[]> {
      const out: string[] = [];
      for await (const [k] of backend.iterate(bucket, range)) out.push(k.toString());
      return out;
    }

    it("puts, deletes and reads by bucket; buckets do not overlap", async () => {
      const batch = backend.batch();
      batch.put("lease", b("1"), b("lease-1"));
      batch.put("members", b("1"), b("member-1"));
      batch.put("members", b("2"), b("member-2"));
      batch.put("membersRemoved", b("0"), b("gone"));
      await backend.write(batch);
      expect((await backend.get("lease", b("1")))?.toString()).toBe("lease-1");
      expect(await backend.get("lease", b("2"))).toBeUndefined();
      expect(await keys("members")).toEqual(["1", "2"]);
      const del = backend.batch();
      del.del("members", b("1"));
      await backend.write(del);
      expect(await keys("members")).toEqual(["2"]);
    });

    it("iterates with bounds, reverse, limit and keys only", async () => {
      const batch = backend.batch();
      for (const k of ["a", "b", "c", "d"]) batch.put("auth", b(k), b(k.toUpperCase()));
      batch.put("authUsers", b("a"), b("next bucket"));
      await backend.write(batch);
      expect(await keys("auth", { gte: b("b"), lt: b("d") })).toEqual(["b", "c"]);
      expect(await keys("auth", { gt: b("b") })).toEqual(["c", "d"]);
      expect(await keys("auth", { reverse: true, limit: 2 })).toEqual(["d", "c"]);
      expect(await keys("auth", { lte: b("b") })).toEqual(["a", "b"]);
      const values: string[] = [];
      for await (const [, v] of backend.iterate("auth", { keysOnly: true })) values.push(v.toString());
      expect(values).toEqual(["", "", "", ""]);
    });

    it("keeps the consistent index and term with the batch, across reopen", async () => {
      expect(backend.consistentIndex()).toBe(0);
      const batch = backend.batch();
      batch.put("cluster", b("version"), b("3.4.0"));
      batch.setConsistentIndex(42, 3);
      await backend.write(batch);
      expect(backend.consistentIndex()).toBe(42);
      expect(backend.consistentTerm()).toBe(3);
      await reopen();
      expect(backend.consistentIndex()).toBe(42);
      expect(backend.consistentTerm()).toBe(3);
      expect((await backend.get("cluster", b("version")))?.toString()).toBe("3.4.0");
    });

    it("applies batches in call order (group commit) and runs hooks before resolving", async () => {
      const order: number[] = [];
      const writes: Promise<void>[] = [];
      for (let i = 1; i <= 50; i++) {
        const batch = backend.batch();
        batch.put("meta", b("x"), b(String(i)));
        batch.setConsistentIndex(i);
        batch.onWritten(() => order.push(i));
        writes.push(backend.write(batch).then(() => expect(order[order.length - 1]).toBeGreaterThanOrEqual(i)));
      }
      await Promise.all(writes);
      expect(order).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect((await backend.get("meta", b("x")))?.toString()).toBe("50");
      expect(backend.consistentIndex()).toBe(50);
    });

    it("fails closed after a refused batch", async () => {
      const bad = backend.batch();
      (bad as unknown as { ops: unknown[] }).ops.push({ type: "put", key: null, value: b("x") });
      await expect(backend.write(bad)).rejects.toBeInstanceOf(BackendFailedError);
      await expect(backend.write(backend.batch())).rejects.toBeInstanceOf(BackendFailedError);
    });

    it("writeSynced writes even an empty batch and keeps the consistent index", async () => {
      const batch = backend.batch();
      batch.put("lease", b("9"), b("x"));
      batch.setConsistentIndex(11);
      const w1 = backend.write(batch);
      const w2 = backend.writeSynced(backend.batch());
      await Promise.all([w1, w2]);
      const synced = backend.batch();
      synced.put("lease", b("10"), b("y"));
      await backend.writeSynced(synced);
      await reopen();
      expect(backend.consistentIndex()).toBe(11);
      expect((await backend.get("lease", b("10")))?.toString()).toBe("y");
    });

    it("reads the latest write synchronously and many keys at once", async () => {
      const batch = backend.batch();
      batch.putPrefixed(Buffer.from([0x01, 0x61]), b("one"));
      batch.putPrefixed(Buffer.from([0x01, 0x62]), b("two"));
      await backend.write(batch);
      expect(backend.getPrefixedSync(Buffer.from([0x01, 0x61]))?.toString()).toBe("one");
      const many = await backend.getManyPrefixed([Buffer.from([0x01, 0x62]), Buffer.from([0x01, 0x63])]);
      expect(many.map((v) => v?.toString())).toEqual(["two", undefined]);
      const del = backend.batch();
      del.delPrefixed(Buffer.from([0x01, 0x61]));
      await backend.write(del);
      expect(backend.getPrefixedSync(Buffer.from([0x01, 0x61]))).toBeUndefined();
    });

    it("iterateAll reads one snapshot of every bucket", async () => {
      const batch = backend.batch();
      batch.put("lease", b("1"), b("l"));
      batch.put("members", b("m"), b("x"));
      batch.setConsistentIndex(7);
      await backend.write(batch);
      const seen: string[] = [];
      const iteration = (async () => {
        for await (const [k, v] of backend.iterateAll()) seen.push(`${k.toString("hex")}=${v.length}`);
      })();
      const later = backend.batch();
      later.put("alarm", b("a"), b("late"));
      await Promise.all([iteration, backend.write(later)]);
      expect(seen.length).toBe(3); // lease, members, and the consistent index in meta; not the alarm
    });

    it("reports sizes and defragments", async () => {
      const batch = backend.batch();
      for (let i = 0; i < 100; i++) batch.put("key", b(`k${i}`), Buffer.alloc(1000, i));
      await backend.write(batch);
      expect(await backend.sizeBytes()).toBeGreaterThan(0);
      await backend.defragment();
      expect(await backend.sizeInUseBytes()).toBeGreaterThanOrEqual(0);
      expect((await keys("key")).length).toBe(100);
    });

    it("refuses work once closed", async () => {
      await backend.close();
      await expect(backend.write(backend.batch())).rejects.toBeInstanceOf(BackendClosedError);
      await expect(backend.get("meta", b("x"))).rejects.toBeInstanceOf(BackendClosedError);
      backend = await Backend.openOn(await disk.open());
    });

    it("carries the revisioned store across a reopen", async () => {
      let store = await MvccStore.open(backend, {}, { clock: systemClock });
      for (let i = 1; i <= 5; i++) {
        const txn = store.write();
        txn.put(b(`k${i % 3}`), b(`v${i}`), 0n);
        const batch = backend.batch();
        txn.end(batch);
        batch.setConsistentIndex(i);
        await backend.write(batch);
      }
      await store.close();
      await reopen();
      store = await MvccStore.open(backend, {}, { clock: systemClock });
      const r = await store.range(b("k"), b("l"), {});
      expect(r.kvs.map((kv) => `${kv.key}=${kv.value}@${kv.modRevision}`)).toEqual(["k0=v3@4", "k1=v4@5", "k2=v5@6"]);
      expect(store.currentRevision).toBe(6);
      await store.close();
    });
  });
}
