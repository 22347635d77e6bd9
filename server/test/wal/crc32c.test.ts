import { describe, expect, it } from "vitest";
import { crc32c, crc32cUpdate, crc32cUpdateUint32LE } from "../../src/pkg/crc32c.js";

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Bit-at-a-time reference, independent of the table code. */
function crc32cSlow(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

describe("crc32c", () => {
  it("matches the published check value and RFC 3720 (iSCSI) vectors", () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(ascii("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
    expect(crc32c(ascii("The quick brown fox jumps over the lazy dog"))).toBe(0x22620404);
  });

  it("agrees with a bit-wise reference on every length and offset, and chains", () => {
    const data = Uint8Array.from({ length: 300 }, (_, i) => (i * 7919 + 13) & 0xff);
    for (let len = 0; len <= 70; len++) {
      for (const start of [0, 1, 3, 7]) {
        const slice = data.subarray(start, start + len);
        expect(crc32c(data, start, start + len)).toBe(crc32cSlow(slice));
      }
    }
    for (let cut = 0; cut <= data.length; cut += 37) {
      expect(crc32cUpdate(crc32c(data.subarray(0, cut)), data.subarray(cut))).toBe(crc32c(data));
    }
  });

  it("continues over a 32-bit number's little-endian bytes as over those bytes", () => {
    const bytes = Buffer.alloc(4);
    for (const crc of [0, 1, 0xe3069283, 0xffffffff, 0x80000000]) {
      for (const value of [0, 1, 0xff, 0x100, 0x12345678, 0x80000000, 0xffffffff, 0xdeadbeef]) {
        bytes.writeUInt32LE(value, 0);
        expect(crc32cUpdateUint32LE(crc, value)).toBe(crc32cUpdate(crc, bytes));
      }
    }
  });
});
