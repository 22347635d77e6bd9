/**
 * Kills a writing child process with SIGKILL at a random moment (often in the middle of a write,
 * an fsync or a segment cut) and checks that every record the child acknowledged as synced is in
 * the log, with the right data, and that the log continues (the child reopens it next round).
 * SEED= picks the kill delays; RUNS= the number of kill rounds.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrWalLocked, Wal } from "../../src/wal/index.js";
import { dataForIndex } from "./fixtures/kill-child-data.js";
import { rng, runsFromEnv, seedFromEnv, tempDir } from "./wal-helpers.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "wal-kill-child.ts");

let t: { dir: string; cleanup: () => void };
beforeEach(() => {
  t = tempDir("etcd-ts-wal-kill-");
});
afterEach(() => t.cleanup());

/** Runs the child until `killAfterMs` after it is ready, SIGKILLs it, returns the acked indexes. */
function runAndKill(
  dir: string,
  killAfterMs: number,
  writers: number,
  whileRunning: () => Promise<void> = async () => undefined,
): Promise<{ acked: number[]; start: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, dir, "8192", String(writers)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const acked: number[] = [];
    let start = -1;
    let stderr = "";
    let buf = "";
    const hardLimit = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith("ack ")) acked.push(Number(line.slice(4)));
        else if (line.startsWith("ready ")) {
          start = Number(line.slice(6));
          whileRunning().then(
            () => setTimeout(() => child.kill("SIGKILL"), killAfterMs),
            (e: unknown) => {
              child.kill("SIGKILL");
              reject(e);
            },
          );
        }
      }
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code, signal) => {
      clearTimeout(hardLimit);
      if (signal !== "SIGKILL") reject(new Error(`child exited with ${code}/${signal}: ${stderr}`));
      else resolve({ acked, start });
    });
  });
}

const rounds = runsFromEnv(6);

describe("Wal survives SIGKILL", () => {
  it("keeps every acknowledged record across repeated kills", async () => {
    const seed = seedFromEnv(Date.now() % 1_000_000);
    const rand = rng(seed);
    const dir = path.join(t.dir, "wal");
    let expectedMin = 0;
    try {
      for (let round = 0; round < rounds; round++) {
        let lockedOut: unknown;
        const { acked, start } = await runAndKill(dir, rand.int(50, 600), rand.int(1, 16), async () => {
          // While the child holds the log, this process must not be able to open it.
          lockedOut = await Wal.open(dir, { index: 0, term: 0 }).then(
            (r) => r.wal.close().then(() => "opened"),
            (e: unknown) => e,
          );
        });
        expect(lockedOut).toBeInstanceOf(ErrWalLocked);
        expect(start).toBeGreaterThan(expectedMin);
        const r = await Wal.open(dir, { index: 0, term: 0 }, { segmentSizeBytes: 8192, preallocation: "sparse" });
        await r.wal.close();
        const byIndex = new Map(r.entries.map((e) => [e.index, e]));
        // Contiguous from 1, and every ack present with the right data.
        r.entries.forEach((e, k) => expect(e.index).toBe(k + 1));
        for (const index of acked) {
          const e = byIndex.get(index);
          expect(e, `acked index ${index} missing (round ${round})`).toBeDefined();
          expect(Buffer.from(e!.data).equals(Buffer.from(dataForIndex(index)))).toBe(true);
        }
        const maxAck = acked.length > 0 ? Math.max(...acked) : 0;
        expect(r.entries.length).toBeGreaterThanOrEqual(maxAck);
        expectedMin = Math.max(expectedMin, r.entries.length);
        console.log(`round ${round}: acked ${acked.length}, log holds ${r.entries.length}`);
      }
    } catch (e) {
      console.error(`seed=${seed}`);
      throw e;
    }
  }, Math.max(300_000, rounds * 15_000));
});
