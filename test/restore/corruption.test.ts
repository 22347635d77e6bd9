/**
 * A member whose data is damaged refuses to start, with the damaged file named, and exits 1:
 * one bit flipped in a backend table (LevelDB .ldb), in the backend's log (.log, a record before
 * others), in its MANIFEST, or in the WAL (a fsynced frame before others). The undamaged copy starts and serves.
 * Real etcd-ts processes on copies of one data dir.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdTsBinary, Member, repoRoot, startMember } from "../harness/member.js";
import { trackChild } from "../harness/processes.js";

/** Starts etcd-ts on `dataDir` and waits for it to exit (it must, within the bound). */
function startExpectingRefusal(m: Member, dataDir: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const args = m.args().map((a) => (a === m.dataDir ? dataDir : a));
    const child = spawn(process.execPath, [path.join(repoRoot, "server", "bin", "etcd-ts.js"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    trackChild(child);
    const out: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => out.push(c));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output: Buffer.concat(out).toString() });
    });
  });
}

function flip(file: string, at: number): void {
  const b = fs.readFileSync(file);
  b[at] = b[at]! ^ 0x04;
  fs.writeFileSync(file, b);
}

describe("damaged data is refused at start-up", () => {
  let m: Member;
  let copies = 0;

  beforeAll(async () => {
    m = await startMember({ binary: etcdTsBinary(), name: "damaged" });
    for (let i = 0; i < 50; i++) await m.grpc().put(`d/k${i}`, `value-${i}`);
    // A restart turns LevelDB's log into a table; the writes after it stay in the new log.
    await m.restart();
    // In three groups a batch interval (100 ms) apart: the log gets a record for each group.
    for (let i = 50; i < 80; i++) {
      await m.grpc().put(`d/k${i}`, `value-${i}`);
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 250));
    }
    await m.stop();
  }, 60_000);

  afterAll(async () => {
    await m.destroy();
  });

  function copy(): string {
    const dir = path.join(m.baseDir, `copy-${copies++}`);
    fs.cpSync(m.dataDir, dir, { recursive: true });
    return dir;
  }

  const db = (dir: string): string => path.join(dir, "member", "snap", "db");

  it("a flipped bit in a backend table", async () => {
    const dir = copy();
    const table = fs.readdirSync(db(dir)).find((n) => n.endsWith(".ldb"));
    expect(table, "the restart left a table").toBeDefined();
    flip(path.join(db(dir), table!), 20);
    const r = await startExpectingRefusal(m, dir);
    expect(r.code).toBe(1);
    expect(r.output).toContain("refusing to start: the member's data is damaged");
    expect(r.output).toContain(`${table} is damaged at offset 0: block checksum mismatch`);
  }, 60_000);

  it("a flipped bit in a backend log record before others", async () => {
    const dir = copy();
    const log = fs.readdirSync(db(dir)).find((n) => /^[0-9]+\.log$/.test(n) && fs.statSync(path.join(db(dir), n)).size > 500)!;
    expect(log).toBeDefined();
    flip(path.join(db(dir), log), 60);
    const r = await startExpectingRefusal(m, dir);
    expect(r.code).toBe(1);
    expect(r.output).toMatch(new RegExp(`${log} is damaged at offset \\d+: log record checksum mismatch before valid records`));
  }, 60_000);

  it("a flipped bit in the backend's MANIFEST (LevelDB's own check, reported the same way)", async () => {
    const dir = copy();
    const manifest = fs.readdirSync(db(dir)).find((n) => n.startsWith("MANIFEST-"))!;
    flip(path.join(db(dir), manifest), 12);
    const r = await startExpectingRefusal(m, dir);
    expect(r.code).toBe(1);
    expect(r.output).toContain("refusing to start: the member's data is damaged");
    expect(r.output).toMatch(/LevelDB refused to open it: .*Corruption/);
  }, 60_000);

  it("a flipped bit in the WAL before other records", async () => {
    const dir = copy();
    const walDir = path.join(dir, "member", "wal");
    const seg = fs.readdirSync(walDir).filter((n) => n.endsWith(".wal")).sort()[0]!;
    flip(path.join(walDir, seg), 400);
    const r = await startExpectingRefusal(m, dir);
    expect(r.code).toBe(1);
    expect(r.output).toContain("refusing to start: the member's data is damaged");
    expect(r.output).toMatch(/wal: corrupt record in .*\.wal at offset \d+/);
  }, 60_000);

  it("the undamaged data dir starts and serves every write", async () => {
    await m.start();
    const r = await m.grpc().range("d/", { rangeEnd: "d0" });
    expect(r.kvs.length).toBe(80);
    await m.stop();
  }, 60_000);
});
