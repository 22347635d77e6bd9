import { describe, expect, it } from "vitest";
import { LeaseQueue } from "../../src/lease/lease-queue.js";
import { seededRandom, testSeed } from "./fakes.js";

describe("LeaseQueue", () => {
  it("orders by time, then ID, with one entry per ID", () => {
    const queue = new LeaseQueue();
    queue.set(5n, 100);
    queue.set(2n, 100);
    queue.set(9n, 50);
    queue.set(5n, 10); // move earlier
    queue.set(9n, 200); // move later
    expect(queue.size).toBe(3);
    expect(queue.timeOf(9n)).toBe(200);
    expect(queue.delete(7n)).toBe(false);
    const popped = [];
    for (let item = queue.pop(); item !== undefined; item = queue.pop()) popped.push([item.id, item.timeMs]);
    expect(popped).toEqual([
      [5n, 10],
      [2n, 100],
      [9n, 200],
    ]);
    expect(queue.peek()).toBeUndefined();
  });

  it("matches a sorted-array model under random operations (SEED=, RUNS=)", () => {
    const runs = Number(process.env["RUNS"] ?? 20);
    const baseSeed = testSeed();
    for (let run = 0; run < runs; run++) {
      const seed = (baseSeed + run) >>> 0;
      try {
        const random = seededRandom(seed);
        const queue = new LeaseQueue();
        const model = new Map<bigint, number>();
        for (let step = 0; step < 2000; step++) {
          const id = BigInt(Math.floor(random() * 64) - 8);
          const choice = random();
          if (choice < 0.5) {
            const timeMs = Math.floor(random() * 100);
            queue.set(id, timeMs);
            model.set(id, timeMs);
          } else if (choice < 0.7) {
            expect(queue.delete(id)).toBe(model.delete(id));
          } else if (choice < 0.85) {
            const expected = [...model.entries()].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))[0];
            const item = queue.pop();
            if (expected === undefined) expect(item).toBeUndefined();
            else {
              expect([item!.id, item!.timeMs]).toEqual(expected);
              model.delete(expected[0]);
            }
          } else {
            expect(queue.timeOf(id)).toBe(model.get(id));
            expect(queue.has(id)).toBe(model.has(id));
          }
          expect(queue.size).toBe(model.size);
        }
      } catch (error) {
        console.error(`seed=${seed}`);
        throw error;
      }
    }
  });
});
