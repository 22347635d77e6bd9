/** Both snapshot stores against their contract; then the in-memory directory's crash behaviour. */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Snapshotter } from "../../src/snap/index.js";
import { MemorySnapDir, MemorySnapshotter } from "../../src/snap/memory-snapshotter.js";
import { describeSnapshotStore, snap } from "./snapshot-store-compliance.js";
import { settles } from "../../../test/harness/settles.js";

describeSnapshotStore("Snapshotter", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), "etcd-ts-snap-store-"));
  const dir = path.join(root, "snap");
  // As a member starts: the directory exists before the snapshotter is used (purge needs it).
  mkdirSync(dir);
  return {
    open: () => new Snapshotter({ dir }),
    fileNames: () => {
      try {
        return readdirSync(dir).sort();
      } catch {
        return [];
      }
    },
    readFile: (name) => {
      try {
        return readFileSync(path.join(dir, name));
      } catch {
        return undefined;
      }
    },
    writeFile: (name, bytes) => writeFileSync(path.join(dir, name), bytes),
    destroy: () => rmSync(root, { recursive: true, force: true }),
  };
});

describeSnapshotStore("MemorySnapshotter", () => {
  const dir = new MemorySnapDir();
  return {
    open: () => new MemorySnapshotter({ dir }),
    fileNames: () => dir.fileNames(),
    readFile: (name) => dir.readFile(name),
    writeFile: (name, bytes) => dir.writeFile(name, bytes),
    destroy: () => undefined,
  };
});

describe("MemorySnapDir: crashes", () => {
  for (const how of ["crash", "kill"] as const) {
    it(`${how}: keeps every saved snapshot and cuts off the snapshotters opened before`, async () => {
      const dir = new MemorySnapDir();
      const old = new MemorySnapshotter({ dir });
      await old.save(snap(1, 10));
      dir[how]();
      expect(await settles(old.save(snap(1, 20)))).toBe(false);
      expect(await settles(old.purge(1))).toBe(false);
      expect(await settles(old.loadNewest())).toBe(false);
      const restarted = new MemorySnapshotter({ dir });
      expect(await restarted.names()).toEqual(["0000000000000001-000000000000000a.snap"]);
      expect(await restarted.loadNewest()).toEqual(snap(1, 10));
    });
  }
});
