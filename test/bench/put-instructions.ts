/**
 * `npm run bench:instructions`: instructions the etcd-ts server executes per put (or per
 * keep-alive, INSTR_WORKLOAD=lease-keepalive), counted by
 * valgrind's callgrind (repeatable on a loaded machine, where wall-clock rates are not; this
 * machine's perf has no instruction counter).
 *
 * Method: one single-member etcd-ts under `valgrind --tool=callgrind --instr-atstart=no
 * --separate-threads=yes`; once it accepts writes, etcd's benchmark tool puts INSTR_WARMUP keys
 * INSTR_WARMUP_RUNS times (uninstrumented), then instrumentation is switched on
 * (callgrind_control -i on), INSTR_PUTS puts run, and the counts are dumped (callgrind_control -d).
 *
 * Why several warm-up runs of 5000: V8 keeps compiling for the first ~20 000 puts, and the first
 * connection that closes sends a burst of optimized functions back to the interpreter (paths their
 * feedback never saw: a stream's end, a socket's close), to be compiled again. With one run of 3000
 * the window counted about 520k instructions per put, a third of them TurboFan's on its worker
 * threads; after four runs of 5000 (three connections closed) about 197k, the compiler's nearly
 * none. The main thread's count ("main") is JavaScript, V8's runtime and the syscalls' user side;
 * "other" is every other thread: V8's compiler and GC helpers, libuv's pool (LevelDB writes).
 *
 * Reported: instructions (Ir) per put over the window, which also holds the member's timers
 * (heartbeat ticks) for the window's duration; the duration is printed beside it. One row per
 * variant of INSTR_VARIANTS, each a fresh server; a variant is an environment for the server,
 * `lean` (default), `grpc-js` (ETCD_TS_LEAN_UNARY=off) or `unary-only` (ETCD_TS_LEAN_STREAM=off:
 * the lean unary path without the lean LeaseKeepAlive).
 *
 * Environment
 *   INSTR_VARIANTS=grpc-js,lean   variants, in this order
 *   INSTR_WORKLOAD=put            put, or lease-keepalive (the benchmark's KeepAliveOnce per request)
 *   INSTR_PUTS=1000               measured puts (requests)
 *   INSTR_WARMUP=5000             puts per warm-up run
 *   INSTR_WARMUP_RUNS=4           warm-up runs, each on a connection of its own
 *   INSTR_CLIENTS=1               benchmark --clients (and --conns=1)
 *   INSTR_IDLE_SECONDS=10         first count this long with no load: the main thread's idle rate
 *                                 (timers) is subtracted from its window count ("main net of
 *                                 idle"); 0 skips it
 *   INSTR_NODE_FLAGS=""           flags for node (V8's, e.g. "--interrupt-budget=16384"), space-separated
 *   INSTR_TOP=0                   also print the main thread's N functions with the most Ir (callgrind_annotate)
 *   INSTR_INCLUSIVE=yes           with INSTR_TOP: inclusive (yes) or self (no) counts
 *   BENCH_NO_BUILD=1              do not build server/dist first
 */
import { execFileSync, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePorts, killChild, sleep, trackChild } from "../harness/processes.js";
import { ensureBenchmarkBinary, runBenchmark } from "./lib-etcd-benchmark.js";
import { etcdctlPut } from "./lib-servers.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const variants = (process.env.INSTR_VARIANTS ?? "grpc-js,lean").split(",").map((v) => v.trim());
const puts = Number(process.env.INSTR_PUTS ?? 1000);
const warmup = Number(process.env.INSTR_WARMUP ?? 5000);
const warmupRuns = Number(process.env.INSTR_WARMUP_RUNS ?? 4);
const clients = Number(process.env.INSTR_CLIENTS ?? 1);
const top = Number(process.env.INSTR_TOP ?? 0);
const idleSeconds = Number(process.env.INSTR_IDLE_SECONDS ?? 10);
const putFlags = ["--key-size=8", "--key-space-size=100000", "--sequential-keys", "--val-size=256"];
const workload = process.env.INSTR_WORKLOAD ?? "put";
const nodeFlags = (process.env.INSTR_NODE_FLAGS ?? "").split(" ").filter((f) => f !== "");
const WORKLOAD_COMMAND: Record<string, string[]> = { put: ["put", ...putFlags], "lease-keepalive": ["lease-keepalive"] };

const VARIANT_ENV: Record<string, Record<string, string>> = {
  lean: {},
  "grpc-js": { ETCD_TS_LEAN_UNARY: "off" },
  "unary-only": { ETCD_TS_LEAN_STREAM: "off" },
};

interface Dump {
  /** Ir of the main thread (callgrind's thread 1). */
  main: number;
  /** Ir of every other thread. */
  other: number;
  /** The main thread's dump file. */
  mainFile: string;
}

/**
 * Dumps callgrind's counts (which zeroes them) and reads the new dump's totals, one file per
 * thread (`<out>.<dump>-<thread>`, thread 01 the main one).
 */
function dump(pid: number, dir: string): Dump {
  const before = new Set(readdirSync(dir));
  execFileSync("callgrind_control", ["-d", String(pid)], { stdio: "ignore" });
  const fresh = readdirSync(dir).filter((f) => f.startsWith("callgrind.out") && !before.has(f));
  if (fresh.length === 0) throw new Error("expected new callgrind dumps, found none");
  const result: Dump = { main: 0, other: 0, mainFile: "" };
  for (const f of fresh) {
    const file = path.join(dir, f);
    const m = /^(?:summary|totals):\s*(\d+)/m.exec(readFileSync(file, "utf8"));
    const ir = m === null ? 0 : Number(m[1]);
    if (f.endsWith("-01")) {
      result.main += ir;
      result.mainFile = file;
    } else result.other += ir;
  }
  if (result.mainFile === "") throw new Error(`no main-thread dump among ${fresh.join(", ")}`);
  return result;
}

async function measure(variant: string, benchmark: string): Promise<{ window: Dump; seconds: number; idle: { main: number } }> {
  const env = VARIANT_ENV[variant];
  if (env === undefined) throw new Error(`unknown variant ${variant}; want one of ${Object.keys(VARIANT_ENV).join(", ")}`);
  const baseDir = mkdtempSync(path.join(os.tmpdir(), "etcd-instr-"));
  const [clientPort, peerPort] = await freePorts(2);
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const outFile = path.join(baseDir, "callgrind.out");
  const logFd = openSync(path.join(baseDir, "server.log"), "a");
  const child = spawn(
    "valgrind",
    [
      "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes", `--callgrind-out-file=${outFile}`,
      process.execPath, ...nodeFlags, path.join(repoRoot, "server", "bin", "etcd-ts.js"),
      "--name=m1", `--data-dir=${path.join(baseDir, "data")}`,
      `--listen-client-urls=${clientUrl}`, `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=m1=${peerUrl}`,
    ],
    { cwd: repoRoot, stdio: ["ignore", logFd, logFd], env: { ...process.env, ...env } },
  );
  closeSync(logFd);
  trackChild(child);
  const endpoint = `127.0.0.1:${clientPort}`;
  try {
    const deadline = Date.now() + 300_000;
    while (!(await etcdctlPut(endpoint, "instr-seed", "v"))) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`server did not start; log: ${path.join(baseDir, "server.log")}`);
      await sleep(1000);
    }
    const run = (total: number) =>
      runBenchmark({ binaryPath: benchmark, endpoint, clients, conns: 1, command: [...WORKLOAD_COMMAND[workload]!, `--total=${total}`], timeoutMs: 1_800_000 });
    for (let i = 0; i < warmupRuns; i++) await run(warmup);
    execFileSync("callgrind_control", ["-i", "on", String(child.pid)], { stdio: "ignore" });
    // The member's own timers (raft ticks) while nothing is asked of it: a rate to subtract.
    const idle = { main: 0 };
    if (idleSeconds > 0) {
      const idleStarted = Date.now();
      await sleep(idleSeconds * 1000);
      const counts = dump(child.pid!, baseDir);
      const idleSecondsTaken = (Date.now() - idleStarted) / 1000;
      idle.main = counts.main / idleSecondsTaken;
    }
    const started = Date.now();
    await run(puts);
    const seconds = (Date.now() - started) / 1000;
    const window = dump(child.pid!, baseDir);
    if (top > 0) {
      const inclusive = process.env.INSTR_INCLUSIVE !== "no";
      const annotated = execFileSync("callgrind_annotate", [`--inclusive=${inclusive ? "yes" : "no"}`, window.mainFile], { encoding: "utf8", maxBuffer: 64 << 20 });
      console.log(`--- ${variant}: main thread, top ${top} ${inclusive ? "inclusive" : "self"} ---\n${annotated.split("\n").slice(0, top + 20).join("\n")}`);
    }
    return { window, seconds, idle };
  } finally {
    await killChild(child, "SIGKILL", 5_000);
    rmSync(baseDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.env.BENCH_NO_BUILD !== "1") execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "inherit" });
  if (WORKLOAD_COMMAND[workload] === undefined) throw new Error(`INSTR_WORKLOAD=${workload}: want one of ${Object.keys(WORKLOAD_COMMAND).join(", ")}`);
  const benchmark = await ensureBenchmarkBinary(repoRoot);
  console.log(`workload=${workload} requests=${puts} warmup=${warmupRuns}x${warmup} clients=${clients} load=${os.loadavg()[0]!.toFixed(2)}`);
  const perRequest = (n: number) => Math.round(n / puts).toLocaleString("en");
  for (const variant of variants) {
    const { window, seconds, idle } = await measure(variant, benchmark);
    // Only the main thread's idle rate is subtracted: the other threads' idle window holds
    // whatever compilation and GC work the warm-up left queued, not a steady rate.
    const netMain = window.main - idle.main * seconds;
    console.log(
      `${variant.padEnd(10)} Ir/request=${perRequest(window.main + window.other)} (main ${perRequest(window.main)}, other ${perRequest(window.other)})` +
        `  main net of idle=${perRequest(netMain)}  window=${seconds.toFixed(1)} s  main idle Ir/s=${Math.round(idle.main).toLocaleString("en")}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
