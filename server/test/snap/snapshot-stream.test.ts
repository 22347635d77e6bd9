import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createSnapshotWriter,
  ErrSnapshotCorrupt,
  openSnapshotStream,
  readSnapshotTrailer,
} from "../../src/snap/index.js";
import { crc32c } from "../../src/pkg/crc32c.js";
import { rng, seedFromEnv } from "../wal/wal-helpers.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "etcd-ts-snapstream-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function readAll(file: string, chunkBytes?: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of openSnapshotStream(file, { chunkBytes })) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe("snapshot streams", () => {
  it("round-trips a multi-chunk payload through the async append API", async () => {
    const seed = seedFromEnv(7);
    const r = rng(seed);
    const w = await createSnapshotWriter(dir, "0000000000000064.snap.db");
    const expected: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const chunk = Buffer.from(r.bytes(r.int(0, 100_000)));
      expected.push(chunk);
      await w.write(chunk);
    }
    const payload = Buffer.concat(expected);
    expect(existsSync(w.path)).toBe(false);
    const info = await w.finish({ sizeBytes: payload.length, crc32c: crc32c(payload) });
    expect(info.sizeBytes).toBe(payload.length);
    expect(statSync(info.path).size).toBe(payload.length + 16);
    expect(readdirSync(dir)).toEqual(["0000000000000064.snap.db"]);
    expect(await readSnapshotTrailer(info.path)).toEqual(info);
    const back = await readAll(info.path, 64 * 1024);
    expect(createHash("sha256").update(back).digest("hex")).toBe(createHash("sha256").update(payload).digest("hex"));
  });

  it("works as a Node.js Writable in a pipeline, including an empty payload", async () => {
    const w = await createSnapshotWriter(dir, "a.snap.db");
    const src = Readable.from([Buffer.from("hello "), Buffer.from("snapshot")]);
    await pipeline(src, w.writable());
    const info = await w.finish();
    expect((await readAll(info.path)).toString()).toBe("hello snapshot");
    const empty = await createSnapshotWriter(dir, "empty.snap.db");
    const e = await empty.finish();
    expect((await readAll(e.path)).length).toBe(0);
  });

  it("detects a flipped bit anywhere (payload or trailer) and a truncated file", async () => {
    const w = await createSnapshotWriter(dir, "b.snap.db");
    const r = rng(seedFromEnv(11));
    const payload = Buffer.from(r.bytes(300_000));
    await w.write(payload);
    const { path: file } = await w.finish();
    const good = readFileSync(file);
    for (const at of [0, 1234, 150_000, payload.length - 1, payload.length + 3, payload.length + 9]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x04;
      writeFileSync(file, bad);
      await expect(readAll(file), `flip at ${at}`).rejects.toBeInstanceOf(ErrSnapshotCorrupt);
    }
    writeFileSync(file, good.subarray(0, good.length - 100));
    await expect(readAll(file)).rejects.toBeInstanceOf(ErrSnapshotCorrupt);
    writeFileSync(file, good);
    expect((await readAll(file)).equals(payload)).toBe(true);
  });

  it("finish refuses a payload that does not match what the sender declared, leaving nothing behind", async () => {
    const w = await createSnapshotWriter(dir, "c.snap.db");
    await w.write(Buffer.from("abc"));
    await expect(w.finish({ crc32c: crc32c(Buffer.from("abd")) })).rejects.toBeInstanceOf(ErrSnapshotCorrupt);
    expect(readdirSync(dir)).toEqual([]);
    const w2 = await createSnapshotWriter(dir, "d.snap.db");
    await w2.write(Buffer.from("abc"));
    await w2.abort();
    expect(readdirSync(dir)).toEqual([]);
    await expect(createSnapshotWriter(dir, "../escape")).rejects.toBeInstanceOf(RangeError);
  });
});
