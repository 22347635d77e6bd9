/**
 * etcdctl watch against real etcd and the server under test (see diff-suite.ts). Each watch runs
 * in the background while the script writes; the script waits (bounded) for the expected number
 * of events, then stops the watcher and compares everything it printed.
 *
 * Watches that start "now" (no --rev) race with the writes that follow; those cases sleep long
 * enough for etcdctl to connect and register before writing. All other cases pin --rev, which
 * makes the output independent of when the watch got registered.
 */
import { describe } from "vitest";
import { diffSuite, sleep, type CaseContext } from "./diff-suite.js";

const EVENT_LINE = /^(PUT|DELETE)$/;
const JSON_EVENT = /[{,]"kv":/g;

/** Current store revision (recorded in the transcript like any other command). */
async function headRevision(c: CaseContext): Promise<number> {
  const res = await c.ctl(["get", "watch-head-probe", "-w", "json"]);
  return (JSON.parse(res.stdout) as { header: { revision: number } }).header.revision;
}

describe("etcdctl watch", () => {
  const s = diffSuite("watch");

  s.case("--rev replays history (simple, json, fields)", async (c) => {
    const start = (await headRevision(c)) + 1;
    await c.ctl(["put", "w1/a", "1"]);
    await c.ctl(["put", "w1/b", "1"]);
    await c.ctl(["put", "w1/a", "2"]);
    await c.ctl(["del", "w1/b"]);
    await c.ctl(["txn"], { stdin: "\nput w1/c 1\nput w1/d 1\ndel w1/a\n\n\n" });
    const simple = c.background(["watch", "w1/", "--prefix", `--rev=${start}`]);
    await simple.waitForLines(EVENT_LINE, 7);
    await simple.stop();
    const json = c.background(["watch", "w1/", "--prefix", `--rev=${start}`, "-w", "json"]);
    await json.waitForMatches(JSON_EVENT, 7);
    await json.stop();
    const fields = c.background(["watch", "w1/a", `--rev=${start}`, "-w", "fields"]);
    await fields.waitForLines(/^"Type"/, 3);
    await fields.stop();
  });

  s.case("--prev-kv, single key and range end", async (c) => {
    const start = (await headRevision(c)) + 1;
    for (const [k, v] of [["a", "1"], ["b", "1"], ["a", "2"], ["c", "1"], ["b", "2"]] as const) await c.ctl(["put", `w2/${k}`, v]);
    await c.ctl(["del", "w2/a"]);
    const prev = c.background(["watch", "w2/", "--prefix", "--prev-kv", `--rev=${start}`]);
    await prev.waitForLines(EVENT_LINE, 6);
    await prev.stop();
    const prevJson = c.background(["watch", "w2/a", "--prev-kv", `--rev=${start}`, "-w", "json"]);
    await prevJson.waitForMatches(JSON_EVENT, 3);
    await prevJson.stop();
    const range = c.background(["watch", "w2/a", "w2/c", `--rev=${start}`]);
    await range.waitForLines(EVENT_LINE, 5);
    await range.stop();
    const single = c.background(["watch", "w2/b", `--rev=${start + 2}`]);
    await single.waitForLines(EVENT_LINE, 1);
    await single.stop();
  });

  s.case("live watch receives new writes", async (c) => {
    const live = c.background(["watch", "w3/", "--prefix"]);
    const liveJson = c.background(["watch", "w3/k", "-w", "json", "--prev-kv"]);
    // No way to see the watch registered that both servers share, so give etcdctl time.
    await sleep(2_000);
    await c.ctl(["put", "w3/k", "1"]);
    await c.ctl(["put", "w3/other", "x"]);
    await c.ctl(["put", "w3/k", "2"]);
    await c.ctl(["del", "w3/k"]);
    await c.ctl(["put", "unrelated", "x"]);
    await c.ctl(["txn"], { stdin: "\nput w3/t1 a\nput w3/t2 b\n\n\n" });
    await live.waitForLines(EVENT_LINE, 6);
    await liveJson.waitForMatches(JSON_EVENT, 3);
    await live.stop();
    await liveJson.stop();
  });

  s.case("watch from a future revision", async (c) => {
    const head = await headRevision(c);
    const w = c.background(["watch", "w4/", "--prefix", `--rev=${head + 3}`]);
    await sleep(500);
    for (let i = 1; i <= 4; i++) await c.ctl(["put", `w4/k${i}`, `${i}`]);
    await w.waitForLines(EVENT_LINE, 2);
    await w.stop();
  });

  s.case("interactive mode", async (c) => {
    const start = (await headRevision(c)) + 1;
    await c.ctl(["put", "w5/a", "1"]);
    await c.ctl(["put", "w5/b", "1"]);
    const w = c.background(["watch", "-i"]);
    w.write(`watch w5/a --rev=${start}\n`);
    await w.waitForLines(EVENT_LINE, 1);
    w.write(`watch w5/ --prefix --rev=${start}\n`);
    await w.waitForLines(EVENT_LINE, 3);
    w.write("cancel 1\n");
    w.write("watch\n");
    w.write(`watch w5/b --rev=${start} --prev-kv\n`);
    await w.waitForLines(EVENT_LINE, 4);
    // Only the prefix watcher sees this key, so the interleaving of watchers cannot vary.
    await c.ctl(["put", "w5/c", "1"]);
    await w.waitForLines(EVENT_LINE, 5);
    w.closeStdin();
    await w.wait();
  });

  s.case("watch with an exec command", async (c) => {
    const start = (await headRevision(c)) + 1;
    await c.ctl(["put", "w6/k", "v1"]);
    await c.ctl(["del", "w6/k"]);
    const w = c.background([
      "watch", "w6/k", `--rev=${start}`, "--",
      "sh", "-c", 'echo "exec: $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE rev=$ETCD_WATCH_REVISION"',
    ]);
    await w.waitForLines(/^exec: /, 2);
    await w.stop();
  });

  s.case("replaying a long history (response batching)", async (c) => {
    const start = (await headRevision(c)) + 1;
    await c.bulkPut(Array.from({ length: 1_200 }, (_, i): [string, string] => [`w7/k${i % 50}`, `v${i}`]));
    // Many events in one revision too.
    const many = Array.from({ length: 120 }, (_, i) => `put w7/t${i} x`).join("\n");
    await c.ctl(["txn"], { stdin: `\n${many}\n\n\n` });
    const json = c.background(["watch", "w7/", "--prefix", `--rev=${start}`, "-w", "json"], { omitStdout: true });
    await json.waitForMatches(JSON_EVENT, 1_320, 15_000);
    const res = await json.stop();
    // The full output is large; the transcript keeps how it was split into responses.
    const shape = res.stdout
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => {
        const r = JSON.parse(l) as { Header: { revision: number }; Events: Array<{ kv: { mod_revision: number } }> | null };
        const ev = r.Events ?? [];
        return `response: header revision ${r.Header.revision}, ${ev.length} events, revisions ${ev[0]?.kv.mod_revision}..${ev[ev.length - 1]?.kv.mod_revision}`;
      });
    c.note(`watch -w json split the history into ${shape.length} responses:`);
    for (const line of shape) c.note(line);
    const simple = c.background(["watch", "w7/k7", `--rev=${start}`]);
    await simple.waitForLines(EVENT_LINE, 24, 10_000);
    await simple.stop();
  });

  s.case("watch argument errors", async (c) => {
    await c.ctl(["watch"]);
    await c.ctl(["watch", "a", "--prefix", "z"]);
    await c.ctl(["watch", "a", "--rev=-5"], { timeoutMs: 4_000 });
  });

  s.case("odd start revisions and ranges", async (c) => {
    // -1 is not below the compacted revision of a never-compacted store (-1): etcd keeps the
    // watch, with no history, and it sees the writes from now on.
    const minusOne = c.background(["watch", "w8/k", "--rev=-1"]);
    await sleep(1_500);
    await c.ctl(["put", "w8/k", "1"]);
    await minusOne.waitForLines(EVENT_LINE, 1);
    await minusOne.stop();
    await c.ctl(["watch", "w8/k", "--rev=-2"], { timeoutMs: 4_000 });
    await c.ctl(["watch", "w8/k", "--rev=-9223372036854775808"], { timeoutMs: 4_000 });
    // key >= range end: "mvcc: watcher range is empty".
    await c.ctl(["watch", "w8/b", "w8/a"], { timeoutMs: 4_000 });
    await c.ctl(["watch", "w8/a", "w8/a"], { timeoutMs: 4_000 });
    // From key (range end "\0") with an empty key: every key.
    const all = c.background(["watch", "--prefix", ""]);
    await sleep(1_500);
    await c.ctl(["put", "w8/z", "1"]);
    await all.waitForLines(EVENT_LINE, 1);
    await all.stop();
  });
});
