/**
 * `etcd-ts defrag --data-dir`: offline compaction of a stopped member's LevelDB backend. After
 * many keys are written, deleted and compacted away, defrag reports the backend's size before and
 * after (smaller), the member starts again on the data dir and serves what was kept; a running
 * member's data dir is refused (its lock is held); a dir without a backend gets etcdutl's error.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { errorLine, runEtcdTs } from "../harness/etcd-ts-tool.js";
import { etcdTsBinary, startMember, type Member } from "../harness/member.js";

describe("etcd-ts defrag", () => {
  let m: Member | undefined;
  afterAll(async () => {
    await m?.destroy();
  });

  it("compacts a stopped member's backend, which then serves as before", async () => {
    m = await startMember({ binary: etcdTsBinary(), name: "defrag" });
    const g = m.grpc();
    const big = "v".repeat(2000);
    for (let i = 0; i < 800; i++) await g.put(`f/k${String(i).padStart(5, "0")}`, `${i}-${big}`);
    const del = await g.deleteRange("f/k00100", { rangeEnd: "f/k99999" });
    expect(del.deleted).toBe(700n);
    const { revision } = (await g.range("f/k00000")).header;
    await g.unary("/etcdserverpb.KV/Compact", Buffer.from([0x08, ...varint(Number(revision)), 0x10, 0x01]));

    const busy = await runEtcdTs(["defrag", "--data-dir", m.dataDir]);
    expect(busy.code).toBe(1);
    expect(errorLine(busy.stderr)).toMatch(/it is in use \(stop the member first\)/);

    await m.stop();
    const r = await runEtcdTs(["defrag", "--data-dir", m.dataDir]);
    expect(r.code, r.stderr).toBe(0);
    const match = /Finished defragmenting etcd data\[.*\]: backend .* (\d+) → (\d+) bytes/.exec(r.stdout);
    expect(match, r.stdout).not.toBeNull();
    expect(Number(match![2])).toBeLessThan(Number(match![1]));

    await m.start();
    const after = await m.grpc().range("f/", { rangeEnd: "f0" });
    expect(after.kvs.length).toBe(100);
    expect(after.header.revision).toBe(revision);
    await m.stop();

    const none = await runEtcdTs(["defrag", "--data-dir", path.join(m.baseDir, "nothing")]);
    expect({ code: none.code, error: errorLine(none.stderr) }).toEqual({ code: 1, error: `Error: cannot open database at ${path.join(m.baseDir, "nothing", "member", "snap", "db")}` });
    expect(fs.existsSync(path.join(m.baseDir, "nothing"))).toBe(false);
  }, 120_000);
});

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
