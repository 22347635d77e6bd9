import { describe, expect, it } from "vitest";
import { OrderedSlots } from "../../src/pkg/ordered-slots.js";
import { SeededRandom, testSeed } from "../../../test/harness/seeded-random.js";

describe("OrderedSlots", () => {
  it("finds, takes and keeps age order like a Map in insertion order", () => {
    const s = new OrderedSlots<bigint, string>();
    s.add(10n, "a");
    s.add(12n, "b");
    s.add(20n, "c");
    expect(s.size).toBe(3);
    expect(s.get(12n)).toBe("b");
    expect(s.get(11n)).toBeUndefined();
    expect(s.take(10n)).toBe("a");
    expect(s.take(10n)).toBeUndefined();
    expect(s.first()).toBe("b");
    expect(s.takeFirst()).toBe("b");
    expect(s.valuesInOrder()).toEqual(["c"]);
    s.clear();
    expect(s.size).toBe(0);
    expect(s.first()).toBeUndefined();
  });

  it("refuses a key not above the last one", () => {
    const s = new OrderedSlots<number, number>();
    s.add(5, 1);
    expect(() => s.add(5, 2)).toThrow(/not above/);
    expect(() => s.add(4, 2)).toThrow(/not above/);
  });

  it("matches a Map over random adds and takes (SEED=)", () => {
    const seed = testSeed();
    try {
      const r = new SeededRandom(seed);
      const s = new OrderedSlots<number, number>();
      const m = new Map<number, number>();
      let next = 1;
      for (let step = 0; step < 20_000; step++) {
        const op = r.int(0, 9);
        if (op < 4) {
          next += r.int(1, 3);
          s.add(next, step);
          m.set(next, step);
        } else if (op < 8) {
          const k = r.int(Math.max(1, next - 300), next);
          expect(s.take(k)).toBe(m.get(k));
          m.delete(k);
        } else if (op < 9) {
          const oldest = m.entries().next();
          expect(s.takeFirst()).toBe(oldest.done ? undefined : oldest.value[1]);
          if (!oldest.done) m.delete(oldest.value[0]);
        } else {
          const k = r.int(Math.max(1, next - 300), next);
          expect(s.get(k)).toBe(m.get(k));
        }
        expect(s.size).toBe(m.size);
      }
      expect(s.valuesInOrder()).toEqual([...m.values()]);
    } catch (e) {
      console.error(`OrderedSlots test failed with SEED=${seed}`);
      throw e;
    }
  });
});
