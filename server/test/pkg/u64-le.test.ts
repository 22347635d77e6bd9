import { describe, expect, it } from "vitest";
import { readU64LE, writeU32BE, writeU32LE, writeU64BE, writeU64LE } from "../../src/pkg/u64-le.js";

describe("u64-le", () => {
  it("writeU32LE and writeU32BE store what Buffer's writeUInt32LE/BE store, and nothing else", () => {
    for (const v of [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x12345678, 0x7fffffff, 0x80000000, 0xdeadbeef, 0xffffffff]) {
      for (const off of [0, 1, 3, 4]) {
        const want = Buffer.alloc(12, 0xaa);
        const got = Buffer.alloc(12, 0xaa);
        want.writeUInt32LE(v, off);
        writeU32LE(got, off, v);
        expect(got).toEqual(want);
        want.writeUInt32BE(v, off);
        writeU32BE(got, off, v);
        expect(got).toEqual(want);
      }
    }
  });

  it("round-trips safe integers and refuses others", () => {
    const b = Buffer.alloc(8);
    for (const n of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 123456789012345, Number.MAX_SAFE_INTEGER]) {
      writeU64LE(b, 0, n, "test");
      expect(readU64LE(b, 0)).toBe(n);
      expect(b.readBigUInt64LE(0)).toBe(BigInt(n));
      writeU64BE(b, 0, n);
      expect(b.readBigUInt64BE(0)).toBe(BigInt(n));
    }
    expect(() => writeU64LE(b, 0, -1, "test")).toThrow(RangeError);
    expect(() => writeU64LE(b, 0, 2 ** 53, "test")).toThrow(RangeError);
    b.writeBigUInt64LE(2n ** 53n, 0);
    expect(readU64LE(b, 0)).toBe(-1);
  });
});
