/**
 * `npm run bench:cluster`: 3-member clusters side by side, the reference etcd 3.4 against
 * etcd-ts (or any two of them), interleaved like `npm run bench` (run.ts):
 *   - load workloads from etcd's own benchmark tool, its connections spread over all three
 *     members' client URLs (so most requests reach a follower and are forwarded, as for real
 *     clients; the leader's URL last, so that a single connection takes a follower's path in
 *     both clusters): put with 1 client, put with 100 clients, linearizable range with 100 clients;
 *   - leader failover: SIGKILL the leader and time until the first write acknowledged through a
 *     surviving member (puts with short deadlines, resent at once), the median of several; the
 *     killed member restarts on its data dir between runs.
 *
 * Method: each workload gets two fresh 3-member clusters (fresh ports and data dirs), one per
 * target, kept for its rounds. A warm-up per cluster (untimed, in two or three runs of the
 * benchmark, each on connections of its own as every round is; long enough for etcd-ts's JIT to
 * compile its hot path) sizes the timed runs (the slower cluster takes about BENCH_SECONDS, both
 * get the same --total); then BENCH_ROUNDS rounds, alternating
 * which cluster goes first. Reported values are medians over rounds; ratio is B/A. Elections use
 * the default timing (100 ms heartbeat, 1 s election timeout), what users get.
 *
 * Environment
 *   BENCH_TARGETS=etcd,etcd-ts   the two targets "A,B" (etcd,etcd measures noise)
 *   BENCH_WORKLOADS=a,b          only these workloads (names as printed)
 *   BENCH_ROUNDS=3               rounds per load workload
 *   BENCH_SECONDS=4              target seconds per timed run for the slower cluster
 *   BENCH_FAILOVER_RUNS=5        leader kills per target for the failover workload
 *   BENCH_WARMUP_SCALE=1         multiplies every warm-up's request count (see run.ts)
 *   BENCH_ETCD_BIN=/usr/bin/etcd reference binary
 *   BENCH_NO_BUILD=1             skip the TypeScript build before starting etcd-ts
 *   BENCH_OUT=.tools/bench-cluster-results.json
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Cluster } from "../harness/cluster.js";
import { GrpcLiteClient } from "../harness/grpc-lite.js";
import { etcdTsBinary, serverBinaryFromSpec, type ServerBinary } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";
import { ensureBenchmarkBinary, envNumber, runBenchmark, runBounded, scaledWarmup, type BenchmarkReport } from "./lib-etcd-benchmark.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

type Target = "etcd" | "etcd-ts";

const targets = (process.env.BENCH_TARGETS ?? "etcd,etcd-ts").split(",").map((t) => t.trim()) as Target[];
if (targets.length !== 2 || !targets.every((t) => t === "etcd" || t === "etcd-ts")) throw new Error(`BENCH_TARGETS: want two of etcd, etcd-ts`);
const rounds = Math.round(envNumber("BENCH_ROUNDS", 3, 1, 50));
const targetSeconds = envNumber("BENCH_SECONDS", 4, 0.2, 600);
const failoverRuns = Math.round(envNumber("BENCH_FAILOVER_RUNS", 5, 1, 100));
const warmupScale = envNumber("BENCH_WARMUP_SCALE", 1, 0.01, 100);
const etcdPath = process.env.BENCH_ETCD_BIN ?? "/usr/bin/etcd";
const outPath = path.resolve(process.env.BENCH_OUT ?? path.join(repoRoot, ".tools", "bench-cluster-results.json"));
const labels = targets[0] === targets[1] ? [`${targets[0]}#1`, `${targets[1]}#2`] : [...targets];

function binaryOf(t: Target): ServerBinary {
  return t === "etcd" ? serverBinaryFromSpec(etcdPath) : etcdTsBinary();
}

const seedKey = "bench-range-key";
const putFlags = ["--key-size=8", "--key-space-size=100000", "--sequential-keys", "--val-size=256"];

interface LoadWorkload {
  kind: "load";
  name: string;
  clients: number;
  conns: number;
  command(total: number): string[];
  /** Untimed requests before the rounds, in `warmupRuns` runs of the benchmark (each on connections of its own). */
  warmupTotal: number;
  warmupRuns: number;
  totalMin: number;
  totalMax: number;
}

interface FailoverWorkload {
  kind: "failover";
  name: string;
}

type Workload = LoadWorkload | FailoverWorkload;

const allWorkloads: Workload[] = [
  // Runs of 2,000 puts with 1 client on fresh etcd-ts clusters read 310, 525, 629, 578, 582, 632 and
  // 304, 411, 499, 690, 749, 738 req/s (etcd 3.4: 402, 470, 479, 525, 473, 462): settled after 6,000-8,000.
  { kind: "load", name: "cluster-put-1x1", clients: 1, conns: 1, command: (n) => ["put", ...putFlags, `--total=${n}`], warmupTotal: 9_000, warmupRuns: 3, totalMin: 300, totalMax: 30_000 },
  // V8 keeps compiling etcd-ts's hot paths for longer under this load. Runs of 10,000 puts on a
  // fresh cluster read 3253, 5784, 6568, 7388, 6428, 7655, 8085, 7948 req/s (etcd 3.4: 5872, 6550,
  // 6435, 7095, 6830, 6782, 6878, 6879); each member optimised about 250 functions in the first
  // run, 60 in the second, 30 and 12 in the next two (--trace-opt). The benchmark's connections
  // closing at the end of a run send a few optimized functions back (--trace-deopt: node's socket
  // and stream paths, "wrong map"): a single warm-up run left that to the first timed round,
  // which read 4389 req/s against 6317 for the third. So the warm-up is three runs.
  { kind: "load", name: "cluster-put-100x10", clients: 100, conns: 10, command: (n) => ["put", ...putFlags, `--total=${n}`], warmupTotal: 45_000, warmupRuns: 3, totalMin: 3_000, totalMax: 200_000 },
  {
    kind: "load",
    name: "cluster-range-l-100x10",
    clients: 100,
    conns: 10,
    command: (n) => ["range", seedKey, "--consistency=l", `--total=${n}`],
    warmupTotal: 10_000,
    warmupRuns: 2,
    totalMin: 3_000,
    totalMax: 200_000,
  },
  { kind: "failover", name: "cluster-failover" },
];

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Same rule as run.ts: the slower side about `targetSeconds`, the faster at least a quarter of it. */
function sizeTotal(w: LoadWorkload, rates: readonly number[]): number {
  const slower = Math.min(...rates);
  const faster = Math.max(...rates);
  const raw = Math.min(Math.max(slower * targetSeconds, (faster * targetSeconds) / 4), slower * targetSeconds * 3);
  const magnitude = 10 ** Math.max(0, Math.floor(Math.log10(Math.max(raw, 1))) - 1);
  return Math.min(w.totalMax, Math.max(w.totalMin, Math.round(raw / magnitude) * magnitude));
}

async function startCluster(t: Target, k: number): Promise<Cluster> {
  const cluster = await Cluster.start({ binary: binaryOf(t), size: 3, namePrefix: `b${k}-`, clusterToken: `bench-cluster-${k}` });
  await cluster.grpc(0).put(seedKey, "v".repeat(256));
  return cluster;
}

interface SideResult {
  label: string;
  requestsPerSec: number[];
  p50Ms: number[];
  p99Ms: number[];
  errors: number;
}

async function runLoad(binaryPath: string, w: LoadWorkload): Promise<Record<string, unknown>> {
  const clusters: Cluster[] = [];
  try {
    for (const [k, t] of targets.entries()) clusters.push(await startCluster(t, k));
    // etcd's benchmark dials its connections round-robin over the endpoints, from the first. The
    // leader's URL goes last in both clusters: with one connection both measure a follower's path
    // (client → follower → leader and back), the path two clients in three take, and with ten the
    // leader holds three in both, rather than whichever member the election happened to pick.
    const leaders = await Promise.all(clusters.map((c) => c.waitLeader()));
    const endpoints = clusters.map((c, k) => [...c.clientUrls.filter((_, i) => i !== leaders[k]), c.clientUrls[leaders[k]!]!].join(","));
    const run = async (c: Cluster, total: number): Promise<BenchmarkReport> =>
      runBenchmark({ binaryPath, endpoint: endpoints[clusters.indexOf(c)]!, clients: w.clients, conns: w.conns, command: w.command(total), timeoutMs: 10 * 60_000 });
    // The last warm-up run's rates size the rounds; every run's are printed.
    const warm = [] as number[];
    const warmRates: string[] = [];
    const warmupTotal = scaledWarmup(w.warmupTotal / w.warmupRuns, warmupScale);
    for (const c of clusters) {
      const rates: number[] = [];
      for (let i = 0; i < w.warmupRuns; i++) rates.push((await run(c, warmupTotal)).requestsPerSec);
      warm.push(rates[rates.length - 1]!);
      warmRates.push(rates.map((r) => r.toFixed(0)).join(", "));
    }
    const total = sizeTotal(w, warm);
    const after = await Promise.all(clusters.map((c) => c.waitLeader()));
    if (after.some((l, k) => l !== leaders[k])) console.log(`${w.name}: a leader changed during the warm-up; the endpoint order no longer puts it last`);
    console.log(`${w.name}: warm-up (${w.warmupRuns} runs of ${warmupTotal}) ${labels[0]} ${warmRates[0]} req/s, ${labels[1]} ${warmRates[1]} req/s; ${rounds} rounds of --total=${total}`);
    const sides: SideResult[] = labels.map((label) => ({ label, requestsPerSec: [], p50Ms: [], p99Ms: [], errors: 0 }));
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const s of order) {
        const rep = await run(clusters[s]!, total);
        sides[s]!.requestsPerSec.push(rep.requestsPerSec);
        sides[s]!.p50Ms.push((rep.latencyPercentilesSec["50"] ?? NaN) * 1_000);
        sides[s]!.p99Ms.push((rep.latencyPercentilesSec["99"] ?? NaN) * 1_000);
        sides[s]!.errors += Object.values(rep.errors).reduce((a, b) => a + b, 0);
      }
    }
    const med = sides.map((s) => median(s.requestsPerSec));
    const line = sides.map((s, i) => `${s.label} ${med[i]!.toFixed(0)} req/s (p50 ${median(s.p50Ms).toFixed(2)} ms, p99 ${median(s.p99Ms).toFixed(2)} ms${s.errors ? `, ${s.errors} errors` : ""})`).join(" | ");
    console.log(`${w.name}: ${line} | ratio ${(med[1]! / med[0]!).toFixed(2)}`);
    return { name: w.name, total, sides, medianRequestsPerSec: med, ratio: med[1]! / med[0]! };
  } finally {
    await Promise.all(clusters.map((c) => c.destroy()));
  }
}

/**
 * One failover: picks a surviving member, SIGKILLs the leader, and resends small puts through the
 * survivor (200 ms deadline each) until one is acknowledged. Returns the milliseconds from the
 * kill to that acknowledgement; restarts the killed member afterwards.
 */
async function oneFailover(cluster: Cluster, n: number): Promise<number> {
  const leader = await cluster.waitLeader();
  const survivor = [0, 1, 2].find((i) => i !== leader)!;
  const client = new GrpcLiteClient({ url: cluster.members[survivor]!.clientUrl, callTimeoutMs: 200 });
  try {
    await client.put("failover/warm", "x").catch(() => undefined);
    const killedAt = performance.now();
    const killing = cluster.kill(leader);
    let ackedAt = 0;
    for (let k = 0; ackedAt === 0; k++) {
      try {
        await client.put(`failover/${n}/${k}`, "x");
        ackedAt = performance.now();
      } catch {
        if (performance.now() - killedAt > 60_000) throw new Error("no write acknowledged within 60 s of the leader's kill");
      }
    }
    await killing;
    return ackedAt - killedAt;
  } finally {
    client.close();
    await cluster.restart(leader);
    await cluster.waitConverged(30_000);
  }
}

async function runFailover(): Promise<Record<string, unknown>> {
  const clusters: Cluster[] = [];
  try {
    for (const [k, t] of targets.entries()) clusters.push(await startCluster(t, k));
    const times: number[][] = [[], []];
    for (let r = 0; r < failoverRuns; r++) {
      const order = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const s of order) {
        await sleep(500);
        times[s]!.push(await oneFailover(clusters[s]!, r));
      }
    }
    const med = times.map((t) => median(t));
    console.log(
      `cluster-failover: ${labels.map((l, i) => `${l} median ${med[i]!.toFixed(0)} ms (${times[i]!.map((t) => t.toFixed(0)).join(", ")})`).join(" | ")} | ratio ${(med[1]! / med[0]!).toFixed(2)}`,
    );
    return { name: "cluster-failover", runs: failoverRuns, timesMs: times, medianMs: med, ratio: med[1]! / med[0]! };
  } finally {
    await Promise.all(clusters.map((c) => c.destroy()));
  }
}

async function main(): Promise<void> {
  const names = process.env.BENCH_WORKLOADS?.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const workloads = allWorkloads.filter((w) => !names || names.includes(w.name));
  if (workloads.length === 0) throw new Error(`BENCH_WORKLOADS matched nothing; workloads: ${allWorkloads.map((w) => w.name).join(", ")}`);
  const binaryPath = await ensureBenchmarkBinary(repoRoot);
  if (targets.includes("etcd-ts") && process.env.BENCH_NO_BUILD !== "1") {
    const tsc = path.join(repoRoot, "node_modules", "typescript", "bin", "tsc");
    const build = await runBounded(process.execPath, [tsc, "-b", "server"], { cwd: repoRoot, timeoutMs: 5 * 60_000 });
    if (build.exitCode !== 0) throw new Error(`build failed:\n${(build.stdout + build.stderr).slice(-4_000)}`);
  }
  console.log(`bench:cluster: ${labels[0]} vs ${labels[1]}, 3 members each, ${os.cpus().length} cpus, workloads: ${workloads.map((w) => w.name).join(", ")}`);
  const startedAt = new Date().toISOString();
  const results: Record<string, unknown>[] = [];
  for (const w of workloads) {
    try {
      results.push(w.kind === "load" ? await runLoad(binaryPath, w) : await runFailover());
    } catch (err) {
      console.log(`${w.name}: FAILED: ${(err as Error).message.slice(0, 3_000)}`);
      results.push({ name: w.name, error: (err as Error).message });
    }
  }
  mkdirSync(path.dirname(outPath), { recursive: true });
  writeFileSync(outPath, JSON.stringify({ startedAt, finishedAt: new Date().toISOString(), targets, labels, rounds, targetSeconds, loadAverage: os.loadavg(), results }, null, 2) + "\n");
  console.log(`results: ${outPath}`);
  process.exitCode = results.some((r) => "error" in r) ? 1 : 0;
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => killAllChildren());
