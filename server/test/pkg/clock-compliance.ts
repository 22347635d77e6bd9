/**
 * The Clock contract (server/src/pkg/clock.ts), written once and run against every implementation:
 * `describeClock(name, newDriver)`. Delays are a few tens of milliseconds, so the system clock's
 * run stays short; the assertions only use what holds on a loaded machine too (timers never fire
 * early, distinct due times fire in order, equal ones in creation order).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Clock, TimerHandle } from "../../src/pkg/clock.js";

export interface ClockDriver {
  clock: Clock;
  /** Lets at least `ms` of the clock's time pass, running what falls due. */
  pass(ms: number): Promise<void>;
}

export function describeClock(name: string, newDriver: () => ClockDriver): void {
  describe(`Clock compliance: ${name}`, () => {
    let d: ClockDriver;
    let handles: TimerHandle[];

    beforeEach(() => {
      d = newDriver();
      handles = [];
    });

    afterEach(() => {
      for (const h of handles) d.clock.clearInterval(h);
    });

    it("tells the time in epoch-style milliseconds that never go back", async () => {
      const t0 = d.clock.nowMs();
      expect(Number.isFinite(t0)).toBe(true);
      await d.pass(15);
      const t1 = d.clock.nowMs();
      expect(t1 - t0).toBeGreaterThanOrEqual(14);
      expect(d.clock.nowMs()).toBeGreaterThanOrEqual(t1);
    });

    it("fires a timeout once, never before it is due, and sees the time it was due", async () => {
      const t0 = d.clock.nowMs();
      const fired: number[] = [];
      handles.push(d.clock.setTimeout(() => fired.push(d.clock.nowMs()), 30));
      await d.pass(5);
      expect(fired).toEqual([]);
      await d.pass(60);
      expect(fired.length).toBe(1);
      expect(fired[0]! - t0).toBeGreaterThanOrEqual(29);
      await d.pass(40);
      expect(fired.length).toBe(1);
    });

    it("fires timeouts in order of due time, equal ones in creation order", async () => {
      const order: string[] = [];
      for (const [label, ms] of [["c", 30], ["a", 10], ["b1", 20], ["b2", 20], ["b3", 20]] as const) {
        handles.push(d.clock.setTimeout(() => order.push(label), ms));
      }
      await d.pass(70);
      expect(order).toEqual(["a", "b1", "b2", "b3", "c"]);
    });

    it("does not fire a cleared timeout; clearing twice, late or foreign handles is harmless", async () => {
      let fired = 0;
      const h = d.clock.setTimeout(() => fired++, 10);
      d.clock.clearTimeout(h);
      d.clock.clearTimeout(h);
      const done = d.clock.setTimeout(() => fired++, 5);
      await d.pass(40);
      d.clock.clearTimeout(done);
      d.clock.clearTimeout({} as TimerHandle);
      expect(fired).toBe(1);
    });

    it("repeats an interval until it is cleared, also from its own callback", async () => {
      let ticks = 0;
      const h = d.clock.setInterval(() => {
        ticks++;
        if (ticks === 3) d.clock.clearInterval(h);
      }, 10);
      handles.push(h);
      await d.pass(120);
      expect(ticks).toBe(3);
      let other = 0;
      const h2 = d.clock.setInterval(() => other++, 10);
      handles.push(h2);
      await d.pass(35);
      expect(other).toBeGreaterThanOrEqual(2);
      d.clock.clearInterval(h2);
      const seen = other;
      await d.pass(40);
      expect(other).toBe(seen);
    });

    it("treats a delay below one millisecond as one", async () => {
      let fired = 0;
      handles.push(d.clock.setTimeout(() => fired++, 0));
      handles.push(d.clock.setTimeout(() => fired++, -5));
      expect(fired).toBe(0);
      await d.pass(10);
      expect(fired).toBe(2);
    });

    it("accepts the unref option", async () => {
      let fired = 0;
      handles.push(d.clock.setTimeout(() => fired++, 5, { unref: true }));
      await d.pass(20);
      expect(fired).toBe(1);
    });
  });
}
