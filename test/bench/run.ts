/**
 * `npm run bench`: the same load, from etcd's own load generator (tools/benchmark of etcd 3.4.23),
 * on the reference etcd (Debian's /usr/bin/etcd 3.4) and on etcd-ts, interleaved in one run, and
 * the ratio etcd-ts / etcd.
 *
 * Method
 * - Each workload gets two fresh single-member servers (fresh loopback ports, fresh data dirs),
 *   started one after the other and kept for all rounds of that workload; the peak RSS (VmHWM)
 *   reported for a workload is therefore that workload's own, over its warm-up and all rounds.
 *   State does grow over the rounds (puts add revisions), equally on both sides.
 * - Warm-up: untimed runs per server (5,000 requests for the range loads; 9,000 to 30,000 for the
 *   puts, in three runs, and 10,000 for txn-put in two, each run on connections of its own as every
 *   round is). It also warms etcd-ts's JIT: V8 compiles the hot path over the first few thousand
 *   requests, during which a 1-client put costs about twice its settled CPU (see the README's
 *   cold-start figures, and `BENCH_WARMUP_SCALE`), and the first connections to close send a few
 *   optimized functions back to be compiled again (node's socket and stream paths): after one
 *   5,000-put warm-up, put-1x1's rounds read 1508, 1510 and 2210 req/s. The last warm-up rates size the
 *   timed runs so that the slower server takes about BENCH_SECONDS per run and the faster one at
 *   least a quarter of that (see sizeTotal; watch-latency's --total is fixed). Both servers always
 *   get the same --total.
 * - R rounds (BENCH_ROUNDS); in each round both servers run the workload, alternating which one
 *   goes first, so that machine noise hits both alike. Reported values are medians over rounds.
 * - The load generator shares the machine's cores with the server under test, as in etcd's own
 *   single-machine figures; both servers pay that alike.
 *
 * Workloads (`--clients`x`--conns`; 256-byte values, puts over 100,000 distinct 8-byte keys)
 *   put-1x1, put-100x10, put-1000x100   put throughput at 1, 100 and 1000 clients
 *   range-s-100x10, range-l-100x10      serializable / linearizable reads of one seeded key on an
 *                                       otherwise idle server (settled)
 *   range-s-after-put-100x10,           the same reads, each run (warm-up too) right after an
 *   range-l-after-put-100x10            untimed burst of 20,000 puts on the same server (`prepare`).
 *                                       Both cases are reported because etcd 3.4 serves reads right
 *                                       after writes more slowly than settled ones: every read copies
 *                                       the backend's buffer of writes not yet committed (committed
 *                                       every 100 ms or 10,000 writes), a cost etcd 3.5 removed by
 *                                       sharing that copy between reads.
 *   txn-put-100x10                      one-put transactions
 *   lease-keepalive-100x10              lease keep-alives
 *   watch-latency-10x2                  10 watchers of one key; 2,500 puts at a fixed 500/s, one at
 *                                       a time, each waiting for all 10 events; the tool times each
 *                                       watcher's event from the put's response (an event that arrived
 *                                       first counts as ~0). The rate is fixed, so req/s is not compared
 *                                       ("n/a (fixed rate)", or the achieved put rate if a server fell
 *                                       short of it): the ratio column holds the latency ratios (p50,
 *                                       p99; above 1 etcd-ts is slower). Logged rates are puts/s.
 *
 * Environment
 *   BENCH_TARGETS=etcd,etcd-ts   the two servers, "A,B"; ratio is B/A (etcd,etcd measures noise)
 *   BENCH_ROUNDS=3               rounds per workload
 *   BENCH_SECONDS=4              target seconds per timed run for the slower server
 *   BENCH_WORKLOADS=a,b          only these workloads (names as printed)
 *   BENCH_OUT=.tools/bench-results.json
 *   BENCH_PROFILE=1              run etcd-ts under `node --cpu-prof` (into .tools/prof/<stamp>/)
 *                                and print its top self-time functions at the end
 *   BENCH_ETCD_BIN=/usr/bin/etcd reference server binary
 *   BENCH_NO_BUILD=1             do not run the TypeScript build before starting etcd-ts
 *   BENCH_KEEP=1                 keep servers' data directories and logs (under the OS tmp dir)
 *   BENCH_TIMEOUT_S=1800         hard limit for the whole run; servers are stopped on expiry
 *   BENCH_WARMUP_SCALE=1         multiplies every warm-up's request count (0.1 measures the cold
 *                                start: put-1x1's timed rounds then begin after 900 requests)
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { formatSelfTimeSummary, summarizeCpuProfiles, type SelfTimeSummary } from "./lib-cpuprofile.js";
import { ensureBenchmarkBinary, envNumber, runBenchmark, runBounded, scaledWarmup, type BenchmarkReport } from "./lib-etcd-benchmark.js";
import { ServerStartError, startServer, type BenchServer, type ServerKind } from "./lib-servers.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

// ---------------------------------------------------------------------------------------------
// Configuration

interface Config {
  targets: [ServerKind, ServerKind];
  rounds: number;
  targetSeconds: number;
  workloadNames: string[] | undefined;
  outPath: string;
  profile: boolean;
  etcdBinaryPath: string;
  build: boolean;
  keepFiles: boolean;
  timeoutSec: number;
  /** BENCH_WARMUP_SCALE: factor on every workload's warm-up request count. */
  warmupScale: number;
}

function readConfig(): Config {
  const targets = (process.env.BENCH_TARGETS ?? "etcd,etcd-ts").split(",").map((t) => t.trim());
  if (targets.length !== 2 || !targets.every((t): t is ServerKind => t === "etcd" || t === "etcd-ts")) {
    throw new Error(`BENCH_TARGETS=${process.env.BENCH_TARGETS}: want two of etcd, etcd-ts, e.g. "etcd,etcd-ts"`);
  }
  const names = process.env.BENCH_WORKLOADS;
  return {
    targets: targets as [ServerKind, ServerKind],
    rounds: Math.round(envNumber("BENCH_ROUNDS", 3, 1, 50)),
    targetSeconds: envNumber("BENCH_SECONDS", 4, 0.2, 600),
    workloadNames: names === undefined || names === "" ? undefined : names.split(",").map((n) => n.trim()),
    outPath: path.resolve(process.env.BENCH_OUT ?? path.join(repoRoot, ".tools", "bench-results.json")),
    profile: process.env.BENCH_PROFILE === "1",
    etcdBinaryPath: process.env.BENCH_ETCD_BIN ?? "/usr/bin/etcd",
    build: process.env.BENCH_NO_BUILD !== "1",
    keepFiles: process.env.BENCH_KEEP === "1",
    timeoutSec: envNumber("BENCH_TIMEOUT_S", 1_800, 10, 86_400),
    warmupScale: envNumber("BENCH_WARMUP_SCALE", 1, 0.01, 100),
  };
}

// ---------------------------------------------------------------------------------------------
// Workloads

interface Workload {
  name: string;
  clients: number;
  conns: number;
  /** Subcommand and flags for a run of `total` requests. */
  command(total: number): string[];
  /**
   * An untimed load run on the same server right before every measured run (warm-up included),
   * e.g. a put burst so that the timed reads start on a server that has just been written to.
   */
  prepare?: PrepareStep;
  /**
   * What is compared. "throughput" (the default): req/s, with --total sized from the warm-up
   * rates. "latency": the tool runs at a fixed rate (set totalMin = totalMax), so req/s says
   * nothing about the server; the latency percentiles are compared instead.
   */
  metric?: "throughput" | "latency";
  /**
   * Latency workloads: the rate the tool is asked for (units of --total per second). A server that
   * falls short of it is flagged in the table: its latency is then measured at a lower load.
   */
  fixedRatePerSec?: number;
  /**
   * The tool counts one result per client per unit of --total (watch-latency: one per watcher per
   * put), so its Requests/sec divided by `clients` is the rate in units of --total (puts/s).
   */
  resultPerClient?: boolean;
  /** Untimed requests before the rounds, in `warmupRuns` runs of the tool (default 1), each on connections of its own. */
  warmupTotal: number;
  warmupRuns?: number;
  totalMin: number;
  totalMax: number;
}

interface PrepareStep {
  clients: number;
  conns: number;
  command: string[];
}

/** The key the range workloads read; every server gets it (256-byte value) before any load. */
const seedKey = "bench-range-key";
const seedValue = "v".repeat(256);
const valueBytes = 256;
/** Puts spread over this many distinct keys, like a real key space, rather than one hot key. */
const keySpaceSize = 100_000;

const putFlags = [`--key-size=8`, `--key-space-size=${keySpaceSize}`, "--sequential-keys", `--val-size=${valueBytes}`];

/** The untimed writes before each run of the range-after-put workloads (about 1-2 s of puts). */
const putBurst: PrepareStep = { clients: 100, conns: 10, command: ["put", ...putFlags, "--total=20000"] };

/**
 * watch-latency's put rate (puts/s). The tool puts one at a time and waits for every watcher's event
 * before the next put, so the rate must stay below what a server does with one client (etcd-ts
 * managed about 600/s at 1000/s asked on a loaded 2-core machine; etcd kept up). Its limiter also
 * lets the first second's worth through at once, so a server that keeps up achieves a bit more.
 */
const watchPutRate = 500;

const allWorkloads: Workload[] = [
  {
    name: "put-1x1",
    clients: 1,
    conns: 1,
    command: (total) => ["put", ...putFlags, `--total=${total}`],
    warmupTotal: 9_000,
    warmupRuns: 3,
    totalMin: 500,
    totalMax: 50_000,
  },
  {
    name: "put-100x10",
    clients: 100,
    conns: 10,
    command: (total) => ["put", ...putFlags, `--total=${total}`],
    warmupTotal: 30_000,
    warmupRuns: 3,
    totalMin: 5_000,
    totalMax: 300_000,
  },
  {
    name: "range-s-100x10",
    clients: 100,
    conns: 10,
    command: (total) => ["range", seedKey, "--consistency=s", `--total=${total}`],
    warmupTotal: 5_000,
    totalMin: 5_000,
    totalMax: 300_000,
  },
  {
    name: "range-l-100x10",
    clients: 100,
    conns: 10,
    command: (total) => ["range", seedKey, "--consistency=l", `--total=${total}`],
    warmupTotal: 5_000,
    totalMin: 5_000,
    totalMax: 300_000,
  },
  {
    name: "put-1000x100",
    clients: 1_000,
    conns: 100,
    command: (total) => ["put", ...putFlags, `--total=${total}`],
    warmupTotal: 30_000,
    warmupRuns: 3,
    totalMin: 10_000,
    totalMax: 300_000,
  },
  {
    name: "range-s-after-put-100x10",
    clients: 100,
    conns: 10,
    command: (total) => ["range", seedKey, "--consistency=s", `--total=${total}`],
    prepare: putBurst,
    warmupTotal: 5_000,
    totalMin: 5_000,
    totalMax: 300_000,
  },
  {
    name: "range-l-after-put-100x10",
    clients: 100,
    conns: 10,
    command: (total) => ["range", seedKey, "--consistency=l", `--total=${total}`],
    prepare: putBurst,
    warmupTotal: 5_000,
    totalMin: 5_000,
    totalMax: 300_000,
  },
  {
    name: "txn-put-100x10",
    clients: 100,
    conns: 10,
    command: (total) => [
      "txn-put",
      "--txn-ops=1",
      "--key-size=8",
      `--key-space-size=${keySpaceSize}`,
      `--val-size=${valueBytes}`,
      `--total=${total}`,
    ],
    warmupTotal: 10_000,
    warmupRuns: 2,
    totalMin: 5_000,
    totalMax: 300_000,
  },
  {
    name: "lease-keepalive-100x10",
    clients: 100,
    conns: 10,
    command: (total) => ["lease-keepalive", `--total=${total}`],
    warmupTotal: 5_000,
    totalMin: 5_000,
    totalMax: 300_000,
  },
  {
    // 10 watchers of one key on 2 connections; 2500 puts at 500/s, one at a time (about 4 s).
    name: "watch-latency-10x2",
    clients: 10,
    conns: 2,
    command: (total) => ["watch-latency", `--put-rate=${watchPutRate}`, "--key-size=8", `--val-size=${valueBytes}`, `--total=${total}`],
    metric: "latency",
    fixedRatePerSec: watchPutRate,
    resultPerClient: true,
    warmupTotal: 1_000,
    totalMin: 2_500,
    totalMax: 2_500,
  },
];

/**
 * The --total for the timed runs, from the two warm-up rates: the slower server should take about
 * `targetSeconds`, but the faster one at least a quarter of that (short runs are mostly connection
 * set-up and noise), as long as that does not stretch the slower one beyond three times the target.
 * Rounded to two significant digits (easy to repeat by hand) and clamped to the workload's bounds.
 */
function sizeTotal(workload: Workload, warmupRequestsPerSec: readonly number[], targetSeconds: number): number {
  const slower = Math.min(...warmupRequestsPerSec);
  const faster = Math.max(...warmupRequestsPerSec);
  const raw = Math.min(Math.max(slower * targetSeconds, (faster * targetSeconds) / 4), slower * targetSeconds * 3);
  const magnitude = 10 ** Math.max(0, Math.floor(Math.log10(Math.max(raw, 1))) - 1);
  const rounded = Math.round(raw / magnitude) * magnitude;
  return Math.min(workload.totalMax, Math.max(workload.totalMin, rounded));
}

// ---------------------------------------------------------------------------------------------
// Results

interface RunRecord {
  round: number;
  /** 0 if this server ran first in its round, 1 if second. */
  position: number;
  /** In units of --total: requests/s, or for watch-latency the put rate achieved. */
  requestsPerSec: number;
  p50Ms: number | undefined;
  p99Ms: number | undefined;
  wallSec: number;
  errors: Record<string, number>;
}

interface SideResult {
  label: string;
  kind: ServerKind;
  warmupRequestsPerSec: number;
  runs: RunRecord[];
  medianRequestsPerSec: number;
  medianP50Ms: number | undefined;
  medianP99Ms: number | undefined;
  /** (max - min) / 2 / median of req/s over rounds, in percent. */
  spreadPercent: number;
  peakRssKiB: number | undefined;
}

interface WorkloadResult {
  name: string;
  clients: number;
  conns: number;
  total?: number;
  command?: string[];
  sides?: [SideResult, SideResult];
  metric?: "throughput" | "latency";
  /** Throughput workloads: medianRequestsPerSec(B) / medianRequestsPerSec(A). */
  ratio?: number;
  /** Latency workloads: the rate asked for (runs' requestsPerSec is the rate achieved). */
  fixedRatePerSec?: number;
  /** Latency workloads: medianP50Ms(B) / medianP50Ms(A) (above 1: B is slower). */
  latencyRatioP50?: number;
  /** Latency workloads: medianP99Ms(B) / medianP99Ms(A). */
  latencyRatioP99?: number;
  /** B/A per round (paired by round): of req/s, or for latency workloads of p50 latency. */
  ratioPerRound?: number[];
  error?: string;
  /** Set when a server under test exited on its own (crashed or was killed from outside). */
  serverExited?: boolean;
  /** The error of a first attempt that was retried because a server exited. */
  firstAttemptError?: string;
  cpuProfile?: SelfTimeSummary;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function medianDefined(values: readonly (number | undefined)[]): number | undefined {
  const defined = values.filter((v): v is number => v !== undefined);
  return defined.length === 0 ? undefined : median(defined);
}

function latencyRatio(b: number | undefined, a: number | undefined): number | undefined {
  return a === undefined || b === undefined || a === 0 ? undefined : b / a;
}

function toMs(report: BenchmarkReport, percentile: string): number | undefined {
  const sec = report.latencyPercentilesSec[percentile];
  return sec === undefined ? undefined : sec * 1_000;
}

// ---------------------------------------------------------------------------------------------
// Running

const activeServers = new Set<BenchServer>();

async function stopServer(server: BenchServer, keepFiles: boolean): Promise<void> {
  try {
    await server.stop(15_000, keepFiles);
  } finally {
    activeServers.delete(server);
  }
}

/** Expected wall time of a run from a measured rate, with generous slack; never under 60 s. */
function runTimeoutMs(total: number, requestsPerSec: number): number {
  const expectedMs = (1_000 * total) / Math.max(requestsPerSec, 1);
  return Math.max(60_000, Math.round(10 * expectedMs) + 20_000);
}

/** A server under test exited while the bench still needed it. */
class ServerExitedError extends Error {
  constructor(server: BenchServer, workload: Workload) {
    super(`${server.kind} exited (${server.exitStatus()}) during ${workload.name}`);
    this.name = "ServerExitedError";
  }
}

/**
 * Runs the tool once against `server`. Throws ServerExitedError at once if the server exits
 * meanwhile (the tool would otherwise retry its connections until the timeout).
 */
async function runOnce(binaryPath: string, server: BenchServer, workload: Workload, total: number, timeoutMs: number) {
  const abort = new AbortController();
  void server.exited.then(() => abort.abort());
  if (workload.prepare !== undefined) await runPrepare(binaryPath, server, workload, workload.prepare, abort.signal);
  const startedAt = Date.now();
  let report: BenchmarkReport;
  try {
    report = await runBenchmark({
      binaryPath,
      endpoint: server.endpoint,
      clients: workload.clients,
      conns: workload.conns,
      command: workload.command(total),
      timeoutMs,
      abortSignal: abort.signal,
    });
  } catch (error) {
    if (!server.running) throw new ServerExitedError(server, workload);
    throw error;
  }
  if (!server.running) throw new ServerExitedError(server, workload);
  const failed = Object.values(report.errors).reduce((a, b) => a + b, 0);
  if (report.requestsPerSec === 0) {
    throw new Error(`${server.kind}: every request of ${workload.name} failed: ${JSON.stringify(report.errors).slice(0, 1_000)}`);
  }
  if (failed > 0) console.log(`  warning: ${server.kind} failed ${failed} of ${total} requests: ${JSON.stringify(report.errors).slice(0, 500)}`);
  // The rate in units of --total (watch-latency: puts/s rather than watch events/s).
  const rate = report.requestsPerSec / (workload.resultPerClient === true ? workload.clients : 1);
  return { report, rate, wallSec: (Date.now() - startedAt) / 1_000 };
}

/** The untimed load before a measured run; throws like runOnce, and if any of its requests failed. */
async function runPrepare(binaryPath: string, server: BenchServer, workload: Workload, step: PrepareStep, abortSignal: AbortSignal) {
  let report: BenchmarkReport;
  try {
    report = await runBenchmark({
      binaryPath,
      endpoint: server.endpoint,
      clients: step.clients,
      conns: step.conns,
      command: step.command,
      timeoutMs: 5 * 60_000,
      abortSignal,
    });
  } catch (error) {
    if (!server.running) throw new ServerExitedError(server, workload);
    throw error;
  }
  const failed = Object.values(report.errors).reduce((a, b) => a + b, 0);
  if (failed > 0) throw new Error(`${server.kind}: ${failed} requests of ${workload.name}'s preparation failed: ${JSON.stringify(report.errors).slice(0, 500)}`);
}

async function runWorkload(config: Config, binaryPath: string, workload: Workload, profileRoot: string | undefined): Promise<WorkloadResult> {
  const result: WorkloadResult = { name: workload.name, clients: workload.clients, conns: workload.conns };
  const labels = sideLabels(config.targets);
  const servers: BenchServer[] = [];
  try {
    for (const [i, kind] of config.targets.entries()) {
      const cpuProfileDir = kind === "etcd-ts" && profileRoot !== undefined ? path.join(profileRoot, workload.name) : undefined;
      if (cpuProfileDir !== undefined) mkdirSync(cpuProfileDir, { recursive: true });
      const server = await startServer({
        kind,
        name: `bench${i}`,
        repoRoot,
        etcdBinaryPath: config.etcdBinaryPath,
        cpuProfileDir,
        seedKey,
        seedValue,
        startTimeoutMs: 30_000,
      });
      activeServers.add(server);
      servers.push(server);
    }

    // The last warm-up run's rates size the rounds.
    const warmupRates: number[] = [];
    const warmupRuns = workload.warmupRuns ?? 1;
    const warmupTotal = scaledWarmup(workload.warmupTotal / warmupRuns, config.warmupScale);
    for (const server of servers) {
      let rate = 0;
      for (let i = 0; i < warmupRuns; i++) rate = (await runOnce(binaryPath, server, workload, warmupTotal, 10 * 60_000)).rate;
      warmupRates.push(rate);
    }
    const total = sizeTotal(workload, warmupRates, config.targetSeconds);
    result.total = total;
    result.command = workload.command(total);
    const unit = workload.metric === "latency" ? "puts/s" : "req/s";
    console.log(
      `${workload.name}: warm-up ${labels[0]} ${warmupRates[0]!.toFixed(0)} ${unit}, ${labels[1]} ${warmupRates[1]!.toFixed(0)} ${unit};` +
        ` ${config.rounds} rounds of --clients=${workload.clients} --conns=${workload.conns} ${result.command.join(" ")}` +
        (workload.prepare === undefined
          ? ""
          : `, each after --clients=${workload.prepare.clients} --conns=${workload.prepare.conns} ${workload.prepare.command.join(" ")}`),
    );

    const runs: RunRecord[][] = [[], []];
    for (let round = 0; round < config.rounds; round++) {
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const [position, side] of order.entries()) {
        const server = servers[side]!;
        const { report, rate, wallSec } = await runOnce(binaryPath, server, workload, total, runTimeoutMs(total, warmupRates[side]!));
        const record: RunRecord = {
          round,
          position,
          requestsPerSec: rate,
          p50Ms: toMs(report, "50"),
          p99Ms: toMs(report, "99"),
          wallSec,
          errors: report.errors,
        };
        runs[side]!.push(record);
        console.log(
          `  round ${round + 1} ${labels[side]!.padEnd(8)} ${rate.toFixed(0).padStart(7)} ${unit}` +
            `  p50 ${fmtMs(record.p50Ms)} ms  p99 ${fmtMs(record.p99Ms)} ms  (${wallSec.toFixed(1)} s)`,
        );
      }
    }

    const sides = servers.map((server, side): SideResult => {
      const rates = runs[side]!.map((r) => r.requestsPerSec);
      const med = median(rates);
      return {
        label: labels[side]!,
        kind: server.kind,
        warmupRequestsPerSec: warmupRates[side]!,
        runs: runs[side]!,
        medianRequestsPerSec: med,
        medianP50Ms: medianDefined(runs[side]!.map((r) => r.p50Ms)),
        medianP99Ms: medianDefined(runs[side]!.map((r) => r.p99Ms)),
        spreadPercent: med === 0 ? 0 : (100 * (Math.max(...rates) - Math.min(...rates))) / 2 / med,
        peakRssKiB: server.peakRssKiB(),
      };
    }) as [SideResult, SideResult];
    result.sides = sides;
    result.metric = workload.metric ?? "throughput";
    result.fixedRatePerSec = workload.fixedRatePerSec;
    if (result.metric === "latency") {
      result.latencyRatioP50 = latencyRatio(sides[1].medianP50Ms, sides[0].medianP50Ms);
      result.latencyRatioP99 = latencyRatio(sides[1].medianP99Ms, sides[0].medianP99Ms);
      result.ratioPerRound = runs[0]!.map((r, i) => latencyRatio(runs[1]![i]!.p50Ms, r.p50Ms) ?? Number.NaN);
      console.log(`  ${labels[1]}/${labels[0]} p50 latency per round: ${result.ratioPerRound.map((r) => r.toFixed(2)).join(" ")}`);
    } else {
      result.ratio = sides[1].medianRequestsPerSec / sides[0].medianRequestsPerSec;
      result.ratioPerRound = runs[0]!.map((r, i) => runs[1]![i]!.requestsPerSec / r.requestsPerSec);
      console.log(`  ${labels[1]}/${labels[0]} per round: ${result.ratioPerRound.map((r) => r.toFixed(2)).join(" ")}`);
    }
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
    result.serverExited =
      error instanceof ServerExitedError ||
      (error instanceof ServerStartError && error.exited) ||
      servers.some((server) => !server.running);
    const tail = (error as { outputTail?: string }).outputTail;
    console.log(`${workload.name}: FAILED: ${result.error}${tail ? `\n--- benchmark output tail ---\n${tail}` : ""}`);
    for (const server of servers) {
      if (!server.running) console.log(`--- ${server.kind} exited (${server.exitStatus()}); log tail ---\n${server.logTail()}`);
      console.log(`  ${server.kind} log kept at ${server.logPath}`);
    }
  } finally {
    // A failed workload keeps its servers' data directories and logs for a look afterwards.
    await Promise.all(servers.map((s) => stopServer(s, config.keepFiles || result.error !== undefined)));
  }
  return result;
}

function sideLabels(targets: readonly ServerKind[]): [string, string] {
  return targets[0] === targets[1] ? [`${targets[0]}#1`, `${targets[1]}#2`] : [targets[0]!, targets[1]!];
}

// ---------------------------------------------------------------------------------------------
// Output

function fmtMs(ms: number | undefined): string {
  if (ms === undefined) return "-";
  // Below 1 ms two significant digits (watch-latency's percentiles are tens of microseconds).
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toPrecision(2);
}

function fmtMiB(kib: number | undefined): string {
  return kib === undefined ? "-" : (kib / 1024).toFixed(0);
}

/** A latency workload's server achieved (within 5%) the fixed rate asked for, in the median run. */
function keptUp(result: WorkloadResult, side: SideResult): boolean {
  return result.fixedRatePerSec === undefined || side.medianRequestsPerSec >= 0.95 * result.fixedRatePerSec;
}

function renderTable(results: readonly WorkloadResult[], labels: [string, string]): string {
  const [a, b] = labels;
  const header = [
    "workload",
    "total",
    `${a} req/s`,
    `${b} req/s`,
    `ratio ${b}/${a}`,
    `${a} p50 ms`,
    `${b} p50 ms`,
    `${a} p99 ms`,
    `${b} p99 ms`,
    `${a} RSS MiB`,
    `${b} RSS MiB`,
  ];
  const rows = results.map((r) => {
    if (r.sides === undefined) return [r.name, String(r.total ?? "-"), "FAILED", "", "", "", "", "", "", "", ""];
    const [sa, sb] = r.sides;
    const latency = r.metric === "latency";
    const rate = (s: SideResult) => {
      if (!latency) return `${s.medianRequestsPerSec.toFixed(0)} ±${s.spreadPercent.toFixed(0)}%`;
      return keptUp(r, s) ? "n/a (fixed rate)" : `${s.medianRequestsPerSec.toFixed(0)}/s < ${r.fixedRatePerSec}/s asked`;
    };
    const ratio = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(2));
    return [
      r.name,
      String(r.total),
      rate(sa),
      rate(sb),
      latency ? `latency p50 ${ratio(r.latencyRatioP50)} p99 ${ratio(r.latencyRatioP99)}` : ratio(r.ratio),
      fmtMs(sa.medianP50Ms),
      fmtMs(sb.medianP50Ms),
      fmtMs(sa.medianP99Ms),
      fmtMs(sb.medianP99Ms),
      fmtMiB(sa.peakRssKiB),
      fmtMiB(sb.peakRssKiB),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.map(line)].join("\n");
}

function listCpuProfiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => path.join(dir, f));
}

function commandOutput(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { cwd: repoRoot, encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(config: Config): Promise<number> {
  const workloads = allWorkloads.filter((w) => config.workloadNames === undefined || config.workloadNames.includes(w.name));
  if (workloads.length === 0) throw new Error(`BENCH_WORKLOADS matched nothing; workloads: ${allWorkloads.map((w) => w.name).join(", ")}`);

  const binaryPath = await ensureBenchmarkBinary(repoRoot);
  if (config.targets.includes("etcd-ts")) {
    if (config.build) {
      console.log("building etcd-ts (tsc -b server) ...");
      const tsc = path.join(repoRoot, "node_modules", "typescript", "bin", "tsc");
      const build = await runBounded(process.execPath, [tsc, "-b", "server"], { cwd: repoRoot, timeoutMs: 5 * 60_000 });
      if (build.exitCode !== 0) throw new Error(`build failed:\n${(build.stdout + build.stderr).slice(-4_000)}`);
    }
    if (!existsSync(path.join(repoRoot, "server", "bin", "etcd-ts.js"))) throw new Error("server/bin/etcd-ts.js is missing");
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const profileRoot = config.profile && config.targets.includes("etcd-ts") ? path.join(repoRoot, ".tools", "prof", stamp) : undefined;

  const labels = sideLabels(config.targets);
  console.log(
    `bench: ${labels[0]} vs ${labels[1]}, ${config.rounds} rounds, ~${config.targetSeconds} s per run, ` +
      `${os.cpus().length} cpus, workloads: ${workloads.map((w) => w.name).join(", ")}`,
  );
  const loadAverageAtStart = os.loadavg();
  if (loadAverageAtStart[0]! > os.cpus().length / 2) {
    console.log(`warning: load average ${loadAverageAtStart[0]!.toFixed(1)} on ${os.cpus().length} cpus; expect noisy numbers`);
  }
  const startedAt = new Date();
  const results: WorkloadResult[] = [];
  for (const workload of workloads) {
    let result = await runWorkload(config, binaryPath, workload, profileRoot);
    if (result.serverExited === true) {
      console.log(`${workload.name}: a server exited before the workload was done; one more try with fresh servers`);
      const firstAttemptError = result.error;
      result = await runWorkload(config, binaryPath, workload, profileRoot);
      result.firstAttemptError = firstAttemptError;
    }
    results.push(result);
  }

  console.log(`\nmedians over ${config.rounds} rounds (req/s ± half the range over rounds):\n`);
  console.log(renderTable(results, labels));
  if (results.some((r) => r.metric === "latency")) {
    console.log(
      `\nwatch-latency puts at a fixed rate, so its req/s says nothing about the server (unless it falls short of` +
        ` the rate asked, then shown); its ratio is of latency (${labels[1]}/${labels[0]}, above 1: ${labels[1]} is slower),` +
        ` the others' of req/s (above 1: ${labels[1]} is faster).`,
    );
  }

  if (profileRoot !== undefined) {
    const all = listCpuProfiles(profileRoot);
    console.log(`\ncpu profiles of etcd-ts: ${all.length} file(s) under ${profileRoot}`);
    if (all.length === 0) console.log("  none written: etcd-ts writes its profile only when it exits cleanly on SIGTERM");
    for (const result of results) {
      const files = listCpuProfiles(path.join(profileRoot, result.name));
      if (files.length === 0) continue;
      result.cpuProfile = summarizeCpuProfiles(files, 15, `file://${repoRoot}/`);
      if (results.length > 1) {
        const top = { ...result.cpuProfile, rows: result.cpuProfile.rows.slice(0, 8) };
        console.log(`\n${result.name}: ${formatSelfTimeSummary(top)}`);
      }
    }
    if (all.length > 0) {
      console.log(`\nall workloads: ${formatSelfTimeSummary(summarizeCpuProfiles(all, 25, `file://${repoRoot}/`))}`);
    }
  }

  const output = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    host: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memoryBytes: os.totalmem(),
      node: process.version,
      loadAverageAtStart,
      loadAverageAtEnd: os.loadavg(),
    },
    etcdVersion: commandOutput(config.etcdBinaryPath, ["--version"]).split("\n")[0],
    etcdTsCommit: commandOutput("git", ["describe", "--always", "--dirty"]),
    targets: config.targets,
    labels,
    rounds: config.rounds,
    targetSeconds: config.targetSeconds,
    valueBytes,
    keySpaceSize,
    workloads: results,
  };
  mkdirSync(path.dirname(config.outPath), { recursive: true });
  writeFileSync(config.outPath, JSON.stringify(output, null, 2) + "\n");
  const shownPath = path.relative(process.cwd(), config.outPath);
  console.log(`\nresults written to ${shownPath.startsWith("..") ? config.outPath : shownPath}`);
  return results.some((r) => r.error !== undefined) ? 1 : 0;
}

async function shutdown(reason: string, code: number): Promise<never> {
  console.error(`bench: ${reason}; stopping servers`);
  await Promise.all([...activeServers].map((s) => s.stop(5_000).catch(() => undefined)));
  process.exit(code);
}

process.once("SIGINT", () => void shutdown("interrupted", 130));
process.once("SIGTERM", () => void shutdown("terminated", 143));

let config: Config;
try {
  config = readConfig();
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exit(2);
}
const watchdog = setTimeout(() => void shutdown(`over BENCH_TIMEOUT_S=${config.timeoutSec}`, 124), config.timeoutSec * 1_000);
watchdog.unref();

main(config)
  .then((code) => {
    process.exitCode = code;
  })
  .catch(async (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : error);
    await Promise.all([...activeServers].map((s) => s.stop(5_000).catch(() => undefined)));
    process.exitCode = 1;
  });
