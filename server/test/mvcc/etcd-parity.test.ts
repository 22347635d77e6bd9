/**
 * Differential test against the reference etcd 3.4 (/usr/bin/etcd, driven with etcdctl): the same
 * seeded sequence of puts, deletes and compactions must give the same revisions, versions, range
 * results and HashKV hashes (the stored bytes are etcd's, so the CRC matches bit for bit).
 * Skipped when etcd is not installed. SEED=n replays.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrCompacted } from "../../src/mvcc/errors.js";
import { Harness, rng, seedFromEnv, tempDir } from "./helpers.js";

const ETCD = "/usr/bin/etcd";
const ETCDCTL = "/usr/bin/etcdctl";
const haveEtcd = existsSync(ETCD) && existsSync(ETCDCTL);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

let etcd: ChildProcess | undefined;
let endpoint = "";
let etcdDir: { dir: string; cleanup: () => Promise<void> };

function ctl(...args: string[]): string {
  return ctlInput(undefined, ...args);
}

function ctlInput(input: string | undefined, ...args: string[]): string {
  return execFileSync(ETCDCTL, [`--endpoints=${endpoint}`, "--command-timeout=5s", ...args], {
    env: { ...process.env, ETCDCTL_API: "3" },
    timeout: 10_000,
    encoding: "utf8",
    input,
    stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
}

beforeAll(async () => {
  if (!haveEtcd) return;
  etcdDir = await tempDir();
  const client = await freePort();
  const peer = await freePort();
  endpoint = `127.0.0.1:${client}`;
  etcd = spawn(
    ETCD,
    [
      "--data-dir", etcdDir.dir,
      "--name", "parity",
      "--listen-client-urls", `http://127.0.0.1:${client}`,
      "--advertise-client-urls", `http://127.0.0.1:${client}`,
      "--listen-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-cluster", `parity=http://127.0.0.1:${peer}`,
    ],
    { stdio: "ignore" },
  );
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      ctl("endpoint", "health");
      break;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
});

afterAll(async () => {
  if (etcd) {
    etcd.kill("SIGTERM");
    await new Promise((r) => etcd!.once("exit", r));
  }
  await etcdDir?.cleanup();
});

interface JsonKv {
  key: string;
  value?: string;
  create_revision: number;
  mod_revision: number;
  version: number;
}

describe.skipIf(!haveEtcd)("parity with etcd 3.4", () => {
  it("same revisions, ranges and HashKV for a seeded history", async () => {
    const seed = seedFromEnv();
    const r = rng(seed);
    const t = await tempDir();
    const h = await Harness.open(t.dir);
    const keys = ["a", "b", "ba", "c", "dir/x", "dir/y"];
    const pick = <T,>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
    let compacted = -1;
    try {
      for (let step = 0; step < 60; step++) {
        const x = r();
        if (x < 0.1) {
          // a multi-op txn: one revision, several sub revisions
          // etcd refuses a txn that names a key twice: use distinct keys
          const chosen = [...keys].sort(() => r() - 0.5).slice(0, 1 + Math.floor(r() * 3));
          const ops: Array<["put", string, string] | ["del", string]> = chosen.map((k, i) =>
            r() < 0.7 ? (["put", k, `t${step}-${i}`] as ["put", string, string]) : (["del", k] as ["del", string]),
          );
          const input = "\n" + ops.map((o) => (o[0] === "put" ? `put ${o[1]} ${o[2]}` : `del ${o[1]}`)).join("\n") + "\n\n\n";
          ctlInput(input, "txn");
          const txn = h.store.write();
          for (const o of ops) {
            if (o[0] === "put") txn.put(Buffer.from(o[1]), Buffer.from(o[2]), 0n);
            else txn.deleteRange(Buffer.from(o[1]), undefined);
          }
          await h.commit(txn);
        } else if (x < 0.6) {
          const k = pick(keys);
          const v = `v${step}-${"x".repeat(Math.floor(r() * 40))}`;
          ctl("put", k, v);
          await h.put(k, v);
        } else if (x < 0.8) {
          if (r() < 0.5) {
            const k = pick(keys);
            ctl("del", k);
            await h.del(k);
          } else {
            ctl("del", "dir/", "--prefix");
            await h.del("dir/", "dir0");
          }
        } else if (x < 0.88 && h.store.currentRevision > compacted + 1) {
          const rev = compacted + 1 + Math.max(1, Math.floor(r() * (h.store.currentRevision - compacted - 1)));
          if (rev > compacted && rev <= h.store.currentRevision && rev > 0) {
            ctl("compact", String(rev), "--physical");
            await h.store.compact(rev);
            compacted = rev;
          }
        } else {
          const out = JSON.parse(ctl("get", "", "--from-key", "-w", "json")) as { header: { revision: number }; kvs?: JsonKv[] };
          const ours = await h.store.range(Buffer.from([0]), Buffer.from([0]));
          expect(ours.revision).toBe(Number(out.header.revision));
          expect(ours.kvs.map((kv) => [kv.key.toString(), kv.value.toString(), kv.createRevision, kv.modRevision, kv.version])).toEqual(
            (out.kvs ?? []).map((kv) => [
              Buffer.from(kv.key, "base64").toString(),
              Buffer.from(kv.value ?? "", "base64").toString(),
              Number(kv.create_revision),
              Number(kv.mod_revision),
              Number(kv.version),
            ]),
          );
        }
        expect(h.store.currentRevision).toBeGreaterThan(0);
      }
      const theirs = JSON.parse(ctl("endpoint", "hashkv", "-w", "json")) as Array<{ HashKV: { hash: number; compact_revision: number; header: { revision: number } } }>;
      const ours = await h.store.hashKV(0);
      expect(ours.revision).toBe(Number(theirs[0]!.HashKV.header.revision));
      expect(ours.compactRevision).toBe(Number(theirs[0]!.HashKV.compact_revision));
      expect(ours.hash).toBe(Number(theirs[0]!.HashKV.hash));
      // a historical revision above the compaction
      const rev = Math.min(h.store.currentRevision, compacted + 2);
      if (rev > compacted && rev > 0) {
        const th = JSON.parse(ctl("endpoint", "hashkv", "--rev", String(rev), "-w", "json")) as Array<{ HashKV: { hash: number } }>;
        expect((await h.store.hashKV(rev)).hash).toBe(Number(th[0]!.HashKV.hash));
      }
      if (compacted > 1) {
        let msg = "";
        try {
          ctl("get", "a", "--rev", String(compacted - 1));
        } catch (e) {
          msg = String((e as { stderr?: string }).stderr);
        }
        expect(msg).toContain("mvcc: required revision has been compacted");
        await expect(h.store.range(Buffer.from("a"), undefined, { revision: compacted - 1 })).rejects.toThrow(ErrCompacted);
      }
    } catch (e) {
      console.error(`etcd parity failed: seed=${seed}`);
      throw e;
    } finally {
      await h.close();
      await t.cleanup();
    }
  });
});
