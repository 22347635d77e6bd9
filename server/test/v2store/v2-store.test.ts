import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { V2Error, V2ErrorCode } from "../../src/v2store/errors.js";
import { V2Store, cleanPath, formatGoTime } from "../../src/v2store/v2-store.js";

/**
 * The fixture is the data of a raft snapshot real etcd 3.4.23 wrote (member/snap/*.snap, with
 * --snapshot-count 5 --enable-v2): one member, a learner added and removed, v2 keys set, made a
 * directory, given a TTL and deleted.
 */
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures");
const fixture = readFileSync(path.join(fixtures, "etcd-3.4.23-store.json"));

/** Length-delimited field `field` of a protobuf message (the first occurrence). */
function protoBytes(msg: Buffer, field: number): Buffer {
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const c = msg[pos++]!;
      v += (c & 0x7f) * 2 ** shift;
      if (c < 0x80) return v;
    }
  };
  while (pos < msg.length) {
    const tag = varint();
    if ((tag & 7) === 0) varint();
    else if ((tag & 7) === 2) {
      const len = varint();
      if (tag >>> 3 === field) return msg.subarray(pos, pos + len);
      pos += len;
    } else throw new Error(`wire type ${tag & 7}`);
  }
  throw new Error(`no field ${field}`);
}

describe("v2 store snapshot JSON", () => {
  it("is what etcd 3.4's .snap file carries as its raft snapshot data", () => {
    // snappb.Snapshot{crc = 1, data = 2} around raftpb.Snapshot{data = 1, metadata = 2}.
    const snap = readFileSync(path.join(fixtures, "etcd-3.4.23-0000000000000002-0000000000000012.snap"));
    const data = protoBytes(protoBytes(snap, 2), 1);
    expect(data.equals(fixture)).toBe(true);
    const s = new V2Store();
    s.recover(data);
    expect(s.save().equals(data)).toBe(true);
  });

  it("recovers etcd 3.4's JSON and saves it back byte for byte", () => {
    const s = new V2Store();
    s.recover(fixture);
    expect(s.index).toBe(10);
    expect(s.save().toString()).toBe(fixture.toString());
    const members = s.get("/0/members", true, true);
    expect(members.node.nodes!.map((n) => n.key)).toEqual(["/0/members/15ffa49f0fb8a805"]);
    expect(s.get("/0/version").node.value).toBe("3.4.0");
    expect(s.get("/0/removed_members", true).node.nodes!.map((n) => n.key)).toEqual(["/0/removed_members/27d724e97d334fa5"]);
  });

  it("writes what etcd 3.4 writes for the same operations (tree, indexes, event history)", () => {
    const expireNs = 1796388412108361358n; // 2026-12-04T12:46:52.108361358Z, the fixture's TTL key
    expect(formatGoTime(expireNs)).toBe("2026-12-04T12:46:52.108361358Z");
    const s = new V2Store({}, { clock: { nowMs: () => Number(expireNs / 1_000_000n) - 999_900 } });
    const raft1 = '{"peerURLs":["http://127.0.0.1:42261"]}';
    s.create("/0/members/15ffa49f0fb8a805/raftAttributes", false, raft1);
    s.set("/0/members/15ffa49f0fb8a805/attributes", false, '{"name":"n1","clientURLs":["http://127.0.0.1:40189"]}');
    s.set("/0/version", false, "3.4.0");
    s.create("/0/members/27d724e97d334fa5/raftAttributes", false, '{"peerURLs":["http://127.0.0.1:1"],"isLearner":true}');
    s.set("/1/foo/bar", false, "baz");
    s.create("/1/dir1", true, "");
    s.delete("/0/members/27d724e97d334fa5", true, true);
    s.create("/0/removed_members/27d724e97d334fa5", false, "");
    s.set("/1/ttlkey", false, "x", { expireTimeNs: expireNs });
    s.delete("/1/foo/bar");
    const ours = JSON.parse(s.save().toString());
    const theirs = JSON.parse(fixture.toString());
    expect(ours.Root).toEqual(theirs.Root);
    expect(ours.WatcherHub).toEqual(theirs.WatcherHub);
    expect(ours.CurrentIndex).toBe(theirs.CurrentIndex);
    expect(ours.CurrentVersion).toBe(theirs.CurrentVersion);
    expect(Object.keys(ours.Stats)).toEqual(Object.keys(theirs.Stats));
    // Stats count local reads too (etcd's member list reads); only the writes must agree.
    for (const k of ["setsSuccess", "deleteSuccess", "createSuccess"]) expect(ours.Stats[k]).toBe(theirs.Stats[k]);
    const text = s.save().toString();
    expect(text.slice(0, text.indexOf(',"Stats"'))).toBe(fixture.toString().slice(0, fixture.indexOf(',"Stats"')));
  });

  it("escapes as Go does", () => {
    const s = new V2Store();
    s.set("/1/k", false, "<a&b>\u2028\b");
    expect(s.save().toString()).toContain('"Value":"\\u003ca\\u0026b\\u003e\\u2028\\u0008"');
  });
});

describe("v2 store operations", () => {
  const code = (f: () => unknown): number => {
    try {
      f();
    } catch (e) {
      if (e instanceof V2Error) return e.errorCode;
      throw e;
    }
    return 0;
  };

  it("returns etcd's error codes", () => {
    const s = new V2Store();
    expect(code(() => s.get("/1/nope"))).toBe(V2ErrorCode.KeyNotFound);
    s.create("/1/a", false, "1");
    expect(code(() => s.create("/1/a", false, "2"))).toBe(V2ErrorCode.NodeExist);
    expect(code(() => s.create("/1/a/b", false, "2"))).toBe(V2ErrorCode.NotDir);
    expect(code(() => s.set("/1", true, ""))).toBe(V2ErrorCode.RootReadOnly);
    expect(code(() => s.delete("/0"))).toBe(V2ErrorCode.RootReadOnly);
    s.create("/1/d/x", false, "1");
    expect(code(() => s.delete("/1/d"))).toBe(V2ErrorCode.NotFile);
    expect(code(() => s.delete("/1/d", true))).toBe(V2ErrorCode.DirNotEmpty);
    expect(code(() => s.set("/1/d", false, "v"))).toBe(V2ErrorCode.NotFile);
    expect(code(() => s.compareAndSwap("/1/a", "other", 0, "3"))).toBe(V2ErrorCode.TestFailed);
    expect(code(() => s.compareAndDelete("/1/a", "", 99))).toBe(V2ErrorCode.TestFailed);
    expect(code(() => s.update("/1/d", "v"))).toBe(V2ErrorCode.NotFile);
    expect(s.index).toBe(2);
  });

  it("sets, swaps, updates and deletes with etcd's indexes", () => {
    const s = new V2Store();
    const c = s.create("/1/a", false, "1");
    expect(c.node).toEqual({ key: "/1/a", value: "1", modifiedIndex: 1, createdIndex: 1 });
    const set = s.set("/1/a", false, "2");
    expect(set.prevNode).toEqual({ key: "/1/a", value: "1", modifiedIndex: 1, createdIndex: 1 });
    expect(set.node.createdIndex).toBe(2);
    const cas = s.compareAndSwap("/1/a", "2", 2, "3");
    expect(cas.node).toEqual({ key: "/1/a", value: "3", modifiedIndex: 3, createdIndex: 2 });
    expect(s.update("/1/a", "4").node.modifiedIndex).toBe(4);
    const post = s.create("/1/q", false, "job", true);
    expect(post.node.key).toBe("/1/q/00000000000000000005");
    expect(s.compareAndDelete("/1/a", "4", 4).node.modifiedIndex).toBe(6);
    s.delete("/1/q", true, true);
    expect(s.index).toBe(7);
    expect(s.get("/1", true, true).node.nodes).toEqual([]);
    const copy = new V2Store();
    copy.recover(s.save());
    expect(copy.save().equals(s.save())).toBe(true);
  });
});

describe("v2 store watchers", () => {
  const sink = (): { events: { action: string; key?: string; etcdIndex: number }[]; event(e: { action: string; node: { key?: string }; etcdIndex: number }): boolean } => {
    const events: { action: string; key?: string; etcdIndex: number }[] = [];
    return { events, event: (e) => (events.push({ action: e.action, key: e.node.key, etcdIndex: e.etcdIndex }), true) };
  };

  it("answers from the history at once, with the current index", () => {
    const s = new V2Store();
    s.set("/1/a", false, "1");
    s.set("/1/a", false, "2");
    const k = sink();
    const w = s.watch("/1/a", false, false, 1, k);
    expect(k.events).toEqual([{ action: "set", key: "/1/a", etcdIndex: 2 }]);
    expect(w.removed).toBe(true);
  });

  it("waits for the next change; a non-stream watcher fires once, a stream watcher every time", () => {
    const s = new V2Store();
    const once = sink();
    const stream = sink();
    s.watch("/1/d", true, false, 0, once);
    s.watch("/1/d", true, true, 0, stream);
    s.set("/1/d/x", false, "1");
    s.set("/1/d/y", false, "1");
    s.set("/1/other", false, "1");
    expect(once.events.map((e) => e.key)).toEqual(["/1/d/x"]);
    expect(stream.events.map((e) => e.key)).toEqual(["/1/d/x", "/1/d/y"]);
    expect(JSON.parse(s.statsJson()).watchers).toBe(1);
  });

  it("hides _ nodes from recursive watchers above them, wakes key watchers when their directory goes", () => {
    const s = new V2Store();
    s.set("/1/d/k", false, "1");
    const above = sink();
    const key = sink();
    s.watch("/1/d", true, true, 0, above);
    s.watch("/1/d/k", false, false, 0, key);
    s.set("/1/d/_h", false, "1");
    s.delete("/1/d", true, true);
    // Twice, as etcd 3.4 sends it: once as a deleted path, once on the walk above the change.
    expect(above.events.map((e) => e.action)).toEqual(["delete", "delete"]);
    expect(key.events).toEqual([{ action: "delete", key: "/1/d", etcdIndex: 3 }]);
  });

  it("401 for an index before the history window; refreshes wake no one; expiry does", () => {
    const s = new V2Store({}, { clock: { nowMs: () => 0 } });
    for (let i = 0; i < 1001; i++) s.set("/1/k", false, String(i));
    expect(() => s.watch("/1/k", false, false, 1, sink())).toThrow(expect.objectContaining({ errorCode: V2ErrorCode.EventIndexCleared, detail: "the requested history has been cleared [2/1]" }));
    const w = sink();
    s.watch("/1/t", false, false, 0, w);
    s.set("/1/t", false, "v", { expireTimeNs: 1_000_000_000_000_000_000n });
    const r = sink();
    s.watch("/1/t", false, false, 0, r);
    s.update("/1/t", "", { expireTimeNs: 2_000_000_000_000_000_000n, refresh: true });
    expect(s.get("/1/t").node.value).toBe("v");
    expect(r.events).toEqual([]);
    s.deleteExpiredKeys(3_000_000_000_000_000_000n);
    expect(r.events.map((e) => e.action)).toEqual(["expire"]);
    expect(s.hasTtlKeys()).toBe(false);
  });
});

describe("v2 store save cache", () => {
  it("a save after any mix of changes equals the save of a store that never saved before", () => {
    let seed = Number(process.env.SEED ?? 7);
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const keys = ["/1/a", "/1/b", "/1/d/x", "/1/d/y", "/1/d/e/z", "/1/_h"];
    const ops: ((s: V2Store) => void)[] = [];
    const run = (s: V2Store, op: (s: V2Store) => void): void => {
      try {
        op(s);
      } catch {
        // store errors leave it unchanged
      }
    };
    const s = new V2Store({}, { clock: { nowMs: () => 0 } });
    for (let step = 0; step < 300; step++) {
      const k = keys[rnd(keys.length)]!;
      const choice = rnd(7);
      const op = (x: V2Store): void => {
        switch (choice) {
          case 0: x.set(k, false, `v${step}`); break;
          case 1: x.set(k, false, "t", { expireTimeNs: 1_000_000_000_000_000_000n + BigInt(step) }); break;
          case 2: x.update(k, `u${step}`); break;
          case 3: x.delete(k.split("/").slice(0, 3).join("/"), true, true); break;
          case 4: x.create("/1/q", false, "in-order", true); break;
          case 5: x.deleteExpiredKeys(1_000_000_000_000_000_000n + BigInt(step)); break;
          default: x.compareAndSwap(k, "", 0, `c${step}`);
        }
      };
      ops.push(op);
      run(s, op);
      if (rnd(3) === 0) {
        const never = new V2Store({}, { clock: { nowMs: () => 0 } });
        for (const o of ops) run(never, o);
        expect(s.save().toString(), `seed=${process.env.SEED ?? 7} step=${step}`).toBe(never.save().toString());
      }
    }
  });
});

describe("cleanPath", () => {
  it("is Go's path.Clean(path.Join(\"/\", p)) for every path of up to 5 pieces, clean ones returned as they are", () => {
    const goClean = (p: string): string => {
      const out: string[] = [];
      for (const c of p.split("/")) {
        if (c === "" || c === ".") continue;
        if (c === "..") out.pop();
        else out.push(c);
      }
      return "/" + out.join("/");
    };
    const pieces = ["/", "a", ".", "..", "b", "x.", ".y", "..z", "%"];
    const all = (n: number): string[] => (n === 0 ? [""] : all(n - 1).flatMap((p) => pieces.map((c) => p + c)));
    let checked = 0;
    for (let n = 0; n <= 5; n++) {
      for (const p of all(n)) {
        expect(cleanPath(p), JSON.stringify(p)).toBe(goClean(p));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(60_000);
  });
});
