/**
 * `npm run bench:instructions`: instructions the etcd-ts server executes per put (or per
 * keep-alive, INSTR_WORKLOAD=lease-keepalive), counted by
 * valgrind's callgrind (repeatable on a loaded machine, where wall-clock rates are not; this
 * machine's perf has no instruction counter).
 *
 * Method: one single-member etcd-ts under `valgrind --tool=callgrind --instr-atstart=no`; once it
 * accepts writes, etcd's benchmark tool puts INSTR_WARMUP keys (uninstrumented: the JIT warms
 * up), then instrumentation is switched on (callgrind_control -i on), INSTR_PUTS puts run, and the
 * counts are dumped (callgrind_control -d). Reported: instructions (Ir) per put over the window,
 * which also holds the member's timers (heartbeat ticks) for the window's duration; the duration
 * is printed beside it. One row per variant of INSTR_VARIANTS, each a fresh server; a variant is
 * an environment for the server, `lean` (default), `grpc-js` (ETCD_TS_LEAN_UNARY=off) or
 * `unary-only` (ETCD_TS_LEAN_STREAM=off: the lean unary path without the lean LeaseKeepAlive).
 *
 * Environment
 *   INSTR_VARIANTS=grpc-js,lean   variants, in this order
 *   INSTR_WORKLOAD=put            put, or lease-keepalive (the benchmark's KeepAliveOnce per request)
 *   INSTR_PUTS=1000               measured puts (requests)
 *   INSTR_WARMUP=3000             puts before the measurement
 *   INSTR_CLIENTS=1               benchmark --clients (and --conns=1)
 *   INSTR_IDLE_SECONDS=10         first count this long with no load: the idle rate (timers) is
 *                                 subtracted from the put window's count ("net"); 0 skips it
 *   INSTR_TOP=0                   also print the N functions with the most inclusive Ir (callgrind_annotate)
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
const warmup = Number(process.env.INSTR_WARMUP ?? 3000);
const clients = Number(process.env.INSTR_CLIENTS ?? 1);
const top = Number(process.env.INSTR_TOP ?? 0);
const idleSeconds = Number(process.env.INSTR_IDLE_SECONDS ?? 10);
const putFlags = ["--key-size=8", "--key-space-size=100000", "--sequential-keys", "--val-size=256"];
const workload = process.env.INSTR_WORKLOAD ?? "put";
const WORKLOAD_COMMAND: Record<string, string[]> = { put: ["put", ...putFlags], "lease-keepalive": ["lease-keepalive"] };

const VARIANT_ENV: Record<string, Record<string, string>> = {
  lean: {},
  "grpc-js": { ETCD_TS_LEAN_UNARY: "off" },
  "unary-only": { ETCD_TS_LEAN_STREAM: "off" },
};

/** Dumps callgrind's counts (which zeroes them) and reads the new dump's total. */
function dump(pid: number, dir: string): { ir: number; file: string } {
  const before = new Set(readdirSync(dir));
  execFileSync("callgrind_control", ["-d", String(pid)], { stdio: "ignore" });
  const fresh = readdirSync(dir).filter((f) => f.startsWith("callgrind.out") && !before.has(f));
  if (fresh.length !== 1) throw new Error(`expected one new callgrind dump, found ${fresh.join(", ") || "none"}`);
  const file = path.join(dir, fresh[0]!);
  const m = /^(?:summary|totals):\s*(\d+)/m.exec(readFileSync(file, "utf8"));
  if (m === null) throw new Error(`no totals in ${file}`);
  return { ir: Number(m[1]), file };
}

async function measure(variant: string, benchmark: string): Promise<{ ir: number; seconds: number; idleIrPerSecond: number }> {
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
      "--tool=callgrind", "--instr-atstart=no", `--callgrind-out-file=${outFile}`,
      process.execPath, path.join(repoRoot, "server", "bin", "etcd-ts.js"),
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
    await run(warmup);
    execFileSync("callgrind_control", ["-i", "on", String(child.pid)], { stdio: "ignore" });
    // The member's own timers (raft ticks) while nothing is asked of it: a rate to subtract.
    let idleIrPerSecond = 0;
    if (idleSeconds > 0) {
      const idleStarted = Date.now();
      await sleep(idleSeconds * 1000);
      const idleIr = dump(child.pid!, baseDir).ir;
      idleIrPerSecond = idleIr / ((Date.now() - idleStarted) / 1000);
    }
    const started = Date.now();
    await run(puts);
    const seconds = (Date.now() - started) / 1000;
    const { ir, file: dumpFile } = dump(child.pid!, baseDir);
    if (top > 0 && dumpFile !== "") {
      const annotated = execFileSync("callgrind_annotate", ["--inclusive=yes", dumpFile], { encoding: "utf8", maxBuffer: 64 << 20 });
      console.log(`--- ${variant}: top ${top} inclusive ---\n${annotated.split("\n").slice(0, top + 20).join("\n")}`);
    }
    return { ir, seconds, idleIrPerSecond };
  } finally {
    await killChild(child, "SIGKILL", 5_000);
    rmSync(baseDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.env.BENCH_NO_BUILD !== "1") execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "inherit" });
  if (WORKLOAD_COMMAND[workload] === undefined) throw new Error(`INSTR_WORKLOAD=${workload}: want one of ${Object.keys(WORKLOAD_COMMAND).join(", ")}`);
  const benchmark = await ensureBenchmarkBinary(repoRoot);
  console.log(`workload=${workload} requests=${puts} warmup=${warmup} clients=${clients} load=${os.loadavg()[0]!.toFixed(2)}`);
  for (const variant of variants) {
    const { ir, seconds, idleIrPerSecond } = await measure(variant, benchmark);
    const net = ir - idleIrPerSecond * seconds;
    console.log(
      `${variant.padEnd(10)} Ir/request=${Math.round(ir / puts).toLocaleString("en")}  net Ir/request=${Math.round(net / puts).toLocaleString("en")}` +
        `  window=${seconds.toFixed(1)} s  idle Ir/s=${Math.round(idleIrPerSecond).toLocaleString("en")}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
