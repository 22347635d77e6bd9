import { describe, expect, it } from "vitest";
import { IdGenerator, formatLeaseId, parseLeaseId } from "../../src/lease/lease-id.js";

describe("IdGenerator", () => {
  it("reproduces IDs a real etcd 3.4 member handed out", () => {
    // Observed: member 0xa7b44c0b2e582d9e started at unix ms with low 40 bits 695726229011
    // granted leases 2d9ea1fc83c61305, ...07, ...09 (request IDs use the same generator).
    const generator = new IdGenerator(0xa7b44c0b2e582d9en, 695726229011);
    const ids = Array.from({ length: 9 }, () => generator.nextLeaseId());
    expect(formatLeaseId(ids[4]!)).toBe("2d9ea1fc83c61305");
    expect(formatLeaseId(ids[6]!)).toBe("2d9ea1fc83c61307");
    expect(formatLeaseId(ids[8]!)).toBe("2d9ea1fc83c61309");
  });

  it("puts the member's low 16 bits on top and a millisecond-seeded counter below", () => {
    const nowMs = Date.UTC(2026, 10, 21, 5, 0, 0);
    const generator = new IdGenerator(0x1234n, nowMs);
    const first = generator.next();
    expect(first >> 48n).toBe(0x1234n);
    expect((first >> 8n) & ((1n << 40n) - 1n)).toBe(BigInt(nowMs) & ((1n << 40n) - 1n));
    expect(first & 0xffn).toBe(1n);
    expect(generator.next()).toBe(first + 1n);
  });

  it("carries the counter into the timestamp and keeps lease IDs positive int64", () => {
    const generator = new IdGenerator(0xffffn, 0);
    let previous = -1n;
    for (let i = 0; i < 600; i++) {
      const id = generator.nextLeaseId();
      expect(id > 0n && id < 1n << 63n).toBe(true);
      expect(id >> 48n).toBe(0x7fffn); // top bit masked off
      expect(id > previous).toBe(true);
      previous = id;
    }
    expect(previous & ((1n << 48n) - 1n)).toBe(600n);
  });

  it("wraps within the 48-bit suffix and never returns lease ID 0", () => {
    const generator = new IdGenerator(0x8000n, 2 ** 40 - 1); // timestamp bits all ones
    for (let i = 0; i < 255; i++) generator.next();
    // The suffix is now 0xffff_ffff_ffff; the next one wraps to 0, which masks to lease ID 0.
    expect(generator.nextLeaseId()).toBe(1n);
  });
});

describe("formatLeaseId / parseLeaseId", () => {
  it("formats like Go's %016x of an int64", () => {
    expect(formatLeaseId(0x694d7d4f8d2b2c0an)).toBe("694d7d4f8d2b2c0a");
    expect(formatLeaseId(1n)).toBe("0000000000000001");
    expect(formatLeaseId(-1n)).toBe("-000000000000001");
    expect(formatLeaseId(-(1n << 63n))).toBe("-8000000000000000");
    expect(formatLeaseId((1n << 63n) - 1n)).toBe("7fffffffffffffff");
  });

  it("parses like Go's strconv.ParseInt(s, 16, 64)", () => {
    expect(parseLeaseId("694d7d4f8d2b2c0a")).toBe(0x694d7d4f8d2b2c0an);
    expect(parseLeaseId("694D7D4F8D2B2C0A")).toBe(0x694d7d4f8d2b2c0an);
    expect(parseLeaseId("1")).toBe(1n);
    expect(parseLeaseId("-1")).toBe(-1n);
    expect(parseLeaseId("+a")).toBe(10n);
    expect(parseLeaseId("-8000000000000000")).toBe(-(1n << 63n));
    expect(parseLeaseId("8000000000000000")).toBeUndefined();
    expect(parseLeaseId("0x10")).toBeUndefined();
    expect(parseLeaseId("")).toBeUndefined();
    expect(parseLeaseId("12g")).toBeUndefined();
    for (const id of [1n, -1n, 0x694d7d4f8d2b2c0an, (1n << 63n) - 1n, -(1n << 63n)]) {
      expect(parseLeaseId(formatLeaseId(id))).toBe(id);
    }
  });
});
