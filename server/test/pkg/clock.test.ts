/** Both clocks against the Clock contract; then what only virtual time can show exactly. */
import { describe, expect, it } from "vitest";
import { ManualClock, systemClock } from "../../src/pkg/clock.js";
import type { Clock as LessorClock } from "../../src/lease/lessor.js";
import { SeededRandom, testSeed } from "../../../test/harness/seeded-random.js";
import { describeClock } from "./clock-compliance.js";

describeClock("systemClock", () => ({
  clock: systemClock,
  pass: (ms) => new Promise((resolve) => setTimeout(resolve, ms + 2)),
}));

describeClock("ManualClock", () => {
  const clock = new ManualClock({ startMs: 1_700_000_000_000 });
  return {
    clock,
    pass: async (ms) => clock.advance(ms),
  };
});

describe("ManualClock", () => {
  it("is a lessor clock", () => {
    const clock: LessorClock = new ManualClock({ startMs: 5 });
    expect(clock.nowMs()).toBe(5);
  });

  it("moves only when told to, firing each timer at its due time", () => {
    const c = new ManualClock();
    const log: string[] = [];
    c.setTimeout(() => log.push(`t@${c.nowMs()}`), 25);
    c.setInterval(() => log.push(`i@${c.nowMs()}`), 10);
    expect(c.nextDueMs()).toBe(10);
    expect(c.pendingTimers()).toBe(2);
    c.advance(9);
    expect(log).toEqual([]);
    c.advanceTo(30);
    expect(log).toEqual(["i@10", "i@20", "t@25", "i@30"]);
    expect(c.nowMs()).toBe(30);
    expect(c.pendingTimers()).toBe(1);
  });

  it("breaks ties by creation order, rescheduled intervals keeping theirs", () => {
    const c = new ManualClock();
    const log: string[] = [];
    c.setInterval(() => log.push("i10"), 10);
    c.setTimeout(() => log.push("t20"), 20);
    c.setInterval(() => log.push("i5"), 5);
    c.advance(20);
    expect(log).toEqual(["i5", "i10", "i5", "i5", "i10", "t20", "i5"]);
  });

  it("fires within the same advance what callbacks schedule inside the window", () => {
    const c = new ManualClock();
    const log: number[] = [];
    c.setTimeout(() => {
      log.push(c.nowMs());
      c.setTimeout(() => log.push(c.nowMs()), 5);
      c.setTimeout(() => log.push(c.nowMs()), 50);
    }, 10);
    c.advance(20);
    expect(log).toEqual([10, 15]);
    expect(c.nextDueMs()).toBe(60);
  });

  it("refuses to go back and stops a timer storm", () => {
    const c = new ManualClock({ startMs: 100, firingsPerAdvanceMax: 50 });
    expect(() => c.advance(-1)).toThrow(RangeError);
    expect(() => c.advanceTo(99)).toThrow(RangeError);
    c.setInterval(() => undefined, 1);
    expect(() => c.advance(1000)).toThrow(/more than 50/);
  });

  it("lets a throwing callback out with the clock at its due time and later timers pending", () => {
    const c = new ManualClock();
    const log: string[] = [];
    c.setTimeout(() => {
      throw new Error("boom");
    }, 10);
    c.setTimeout(() => log.push("later"), 20);
    expect(() => c.advance(30)).toThrow("boom");
    expect(c.nowMs()).toBe(10);
    c.advance(20);
    expect(log).toEqual(["later"]);
  });

  it("replays the same schedule identically (SEED=)", () => {
    const seed = testSeed();
    const run = (): string[] => {
      const r = new SeededRandom(seed);
      const c = new ManualClock();
      const log: string[] = [];
      const handles = [];
      for (let i = 0; i < 200; i++) {
        const ms = r.int(0, 50);
        const id = i;
        if (r.next() < 0.3) handles.push(c.setInterval(() => log.push(`i${id}@${c.nowMs()}`), ms));
        else handles.push(c.setTimeout(() => log.push(`t${id}@${c.nowMs()}`), ms));
        if (r.next() < 0.2) c.clearTimeout(handles[r.int(0, handles.length - 1)]!);
        if (r.next() < 0.3) c.advance(r.int(0, 7));
      }
      c.advance(100);
      return log;
    };
    const first = run();
    try {
      expect(run()).toEqual(first);
      for (let i = 1; i < first.length; i++) {
        const t = (s: string): number => Number(s.split("@")[1]);
        expect(t(first[i]!)).toBeGreaterThanOrEqual(t(first[i - 1]!));
      }
    } catch (e) {
      console.error(`ManualClock replay test failed with SEED=${seed}`);
      throw e;
    }
  });
});
