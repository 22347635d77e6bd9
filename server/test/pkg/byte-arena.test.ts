import { describe, expect, it } from "vitest";
import { ByteArena } from "../../src/pkg/byte-arena.js";

describe("ByteArena", () => {
  it("copies into shared chunks, starting a new chunk when one is full", () => {
    const arena = new ByteArena(64);
    const a = arena.copy(Buffer.from("0123456789"));
    const b = arena.copy(Buffer.from("abcdef"));
    expect(a.toString()).toBe("0123456789");
    expect(b.toString()).toBe("abcdef");
    expect(a.buffer).toBe(b.buffer);
    const fill = Array.from({ length: 5 }, () => arena.copy(Buffer.alloc(12, 1)));
    expect(fill.at(-1)!.buffer).not.toBe(a.buffer);
    expect(fill.at(-1)!.byteLength).toBe(12);
  });

  it("gives a large copy its own backing store, and an empty input an empty buffer", () => {
    const arena = new ByteArena(64);
    const big = arena.copy(Buffer.alloc(17, 7));
    expect(big.buffer.byteLength).toBe(17);
    expect(arena.copy(new Uint8Array(0)).length).toBe(0);
  });

  it("never aliases its source", () => {
    const arena = new ByteArena(1024);
    const src = Buffer.from("mutable");
    const copy = arena.copy(src);
    src.fill(0);
    expect(copy.toString()).toBe("mutable");
  });
});
