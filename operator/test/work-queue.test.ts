import { describe, expect, it } from "vitest";
import { WorkQueue, type Timers } from "../src/kube/work-queue.js";

function fakeTimers() {
  let now = 0;
  const pending: Array<{ at: number; fn: () => void; handle: number }> = [];
  let n = 0;
  const timers: Timers = {
    setTimeout: (fn, ms) => {
      const handle = ++n;
      pending.push({ at: now + ms, fn, handle });
      return handle;
    },
    clearTimeout: (h) => {
      const i = pending.findIndex((p) => p.handle === h);
      if (i >= 0) pending.splice(i, 1);
    },
  };
  const advance = (ms: number) => {
    now += ms;
    for (const p of pending.filter((p) => p.at <= now).sort((a, b) => a.at - b.at)) {
      pending.splice(pending.indexOf(p), 1);
      p.fn();
    }
  };
  return { timers, now: () => now, advance, pending };
}

describe("WorkQueue", () => {
  it("deduplicates keys that wait", async () => {
    const q = new WorkQueue({ maxKeys: 10 });
    q.add("a");
    q.add("b");
    q.add("a");
    expect(q.length).toBe(2);
    expect(await q.next()).toBe("a");
    expect(await q.next()).toBe("b");
  });

  it("never hands out a key twice at once; a key added while processing comes back after done", async () => {
    const q = new WorkQueue({ maxKeys: 10 });
    q.add("a");
    expect(await q.next()).toBe("a");
    q.add("a");
    expect(q.length).toBe(0);
    q.done("a");
    expect(q.length).toBe(1);
    expect(await q.next()).toBe("a");
  });

  it("wakes a waiting worker", async () => {
    const q = new WorkQueue({ maxKeys: 10 });
    const p = q.next();
    q.add("x");
    expect(await p).toBe("x");
  });

  it("keeps the earliest of several delayed adds, and an add now cancels the delay", async () => {
    const t = fakeTimers();
    const q = new WorkQueue({ maxKeys: 10 }, { timers: t.timers, now: t.now });
    q.addAfter("a", 1000);
    q.addAfter("a", 500);
    q.addAfter("a", 2000);
    expect(t.pending.length).toBe(1);
    t.advance(499);
    expect(q.length).toBe(0);
    t.advance(1);
    expect(q.length).toBe(1);
    q.addAfter("b", 100);
    q.add("b");
    expect(t.pending.length).toBe(0);
    expect(q.length).toBe(2);
  });

  it("is bounded: adds beyond maxKeys are refused and counted", () => {
    const q = new WorkQueue({ maxKeys: 2 });
    expect(q.add("a")).toBe(true);
    expect(q.add("b")).toBe(true);
    expect(q.add("c")).toBe(false);
    expect(q.dropped).toBe(1);
    expect(q.add("a")).toBe(true);
  });

  it("shutdown releases waiting workers", async () => {
    const q = new WorkQueue({ maxKeys: 2 });
    const p = q.next();
    q.shutdown();
    expect(await p).toBeUndefined();
  });
});
