/**
 * The small pieces under the Lock and Election services: the participant key layout, the prefix
 * range, and the bounded watch queue (the services themselves are tested against etcd 3.4 in
 * test/concurrency).
 */
import { describe, expect, it } from "vitest";
import { participantKey } from "../../../src/api/v3rpc/concurrency.js";
import { CallAbortedError, prefixRangeEnd, WatchQueue } from "../../../src/api/v3rpc/local-client.js";
import type { Watcher } from "../../../src/mvcc/watch-hub.js";

describe("participant keys and prefix ranges", () => {
  it("names a participant by its lease in lower-case hex, as Go's %x prints an int64", () => {
    expect(participantKey(Buffer.from("lock/"), 0x694d7ef1a4c8b00dn).toString()).toBe("lock/694d7ef1a4c8b00d");
    expect(participantKey(Buffer.from("/"), 255n).toString()).toBe("/ff");
    expect(participantKey(Buffer.from("x/"), -5n).toString()).toBe("x/-5");
  });

  it("ends a prefix range after the last byte below 0xff, or at the end of the keyspace", () => {
    expect(prefixRangeEnd(Buffer.from("a/"))).toEqual(Buffer.from("a0"));
    expect(prefixRangeEnd(Buffer.from([0x61, 0xff]))).toEqual(Buffer.from([0x62]));
    expect(prefixRangeEnd(Buffer.from([0xff, 0xff]))).toEqual(Buffer.from([0]));
  });
});

describe("WatchQueue", () => {
  const fakeWatcher = (): Watcher & { resumed: number; cancelled: boolean } => {
    const w = {
      resumed: 0,
      cancelled: false,
      isSynced: true,
      cancel: () => void (w.cancelled = true),
      requestProgress: () => true,
      resume: () => void w.resumed++,
    };
    return w;
  };

  it("holds at most its bound, asks the hub to resume once a full queue is read, skips progress notices", async () => {
    const q = new WatchQueue(2);
    const w = fakeWatcher();
    q.attach(w);
    const batch = (revision: number) => ({ revision, events: [{ type: "DELETE" as const, kv: { key: Buffer.from("k"), createRevision: 0, modRevision: revision, version: 0, value: Buffer.alloc(0), lease: 0n } }] });
    expect(q.send({ revision: 1, events: [] })).toBe(true);
    expect(q.send(batch(2))).toBe(true);
    expect(q.send(batch(3))).toBe(false);
    const signal = new AbortController().signal;
    expect(await q.next(signal)).toMatchObject({ revision: 2 });
    expect(w.resumed).toBe(1);
    const pending = q.next(signal);
    expect(q.send(batch(3))).toBe(true);
    expect(await pending).toMatchObject({ revision: 3 });
    q.close();
    expect(w.cancelled).toBe(true);
  });

  it("ends a wait with CallAbortedError when the caller goes away", async () => {
    const q = new WatchQueue(4);
    q.attach(fakeWatcher());
    const ac = new AbortController();
    const pending = q.next(ac.signal);
    ac.abort();
    await expect(pending).rejects.toBeInstanceOf(CallAbortedError);
  });
});
