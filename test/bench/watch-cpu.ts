/**
 * `npx tsx test/bench/watch-cpu.ts`: the server CPU each watch event costs, for when the machine
 * is too busy for `npm run bench`'s latencies to mean much. etcd 3.4, etcd-ts, and etcd-ts with
 * its streams left to grpc-js (ETCD_TS_LEAN_STREAM=off) each get the same fixed load (etcd's
 * benchmark tool: watch-latency, 10 watchers of one key on 2 connections, 2,500 puts at 500/s,
 * so 25,000 watch events), in rounds that rotate which server goes first; the server's own
 * utime+stime (/proc/<pid>/stat) around each run, divided by the events, is its CPU per event
 * (the put that caused the event included). Medians over rounds; the tool's p50/p99 as well.
 *
 * Environment: WATCH_CPU_ROUNDS=5, WATCH_CPU_PUTS=2500.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { killAllChildren } from "../harness/processes.js";
import { ensureBenchmarkBinary, runBenchmark } from "./lib-etcd-benchmark.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const ROUNDS = Number(process.env.WATCH_CPU_ROUNDS ?? 5);
const PUTS = Number(process.env.WATCH_CPU_PUTS ?? 2500);
const WATCHERS = 10;
const TICKS_PER_SEC = 100; // Linux's USER_HZ

/** The process's user+system CPU so far, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of stat(5) (utime, stime); `fields` starts at field 3.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SEC;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

interface Side {
  name: string;
  member: Member;
  cpuPerEventUs: number[];
  p50Ms: number[];
  p99Ms: number[];
}

async function main(): Promise<void> {
  const tool = await ensureBenchmarkBinary(repoRoot);
  const reference = referenceEtcdPath();
  if (reference === undefined) throw new Error("no reference etcd");
  const starts: Array<[string, Parameters<typeof startMember>[0]]> = [
    ["etcd", { binary: serverBinaryFromSpec(reference) }],
    ["etcd-ts", { binary: etcdTsBinary() }],
    ["etcd-ts, lean streams off", { binary: etcdTsBinary(), env: { ETCD_TS_LEAN_STREAM: "off" } }],
  ];
  const sides: Side[] = [];
  for (const [name, options] of starts) sides.push({ name, member: await startMember(options), cpuPerEventUs: [], p50Ms: [], p99Ms: [] });
  const run = async (side: Side, puts: number) => {
    const pid = side.member.pid!;
    const before = cpuMs(pid);
    const report = await runBenchmark({
      binaryPath: tool,
      endpoint: `127.0.0.1:${side.member.clientPort}`,
      clients: WATCHERS,
      conns: 2,
      command: ["watch-latency", "--put-rate=500", "--key-size=8", "--val-size=256", `--total=${puts}`],
      timeoutMs: 120_000,
    });
    return { cpuMs: cpuMs(pid) - before, report };
  };
  try {
    for (const side of sides) await run(side, 500); // warm-up (JIT, caches)
    for (let round = 0; round < ROUNDS; round++) {
      const order = sides.map((_, i) => sides[(i + round) % sides.length]!);
      for (const side of order) {
        const { cpuMs: used, report } = await run(side, PUTS);
        side.cpuPerEventUs.push((used * 1000) / (PUTS * WATCHERS));
        side.p50Ms.push((report.latencyPercentilesSec["50"] ?? NaN) * 1000);
        side.p99Ms.push((report.latencyPercentilesSec["99"] ?? NaN) * 1000);
        console.log(`round ${round + 1} ${side.name}: ${side.cpuPerEventUs.at(-1)!.toFixed(1)} µs CPU/event, p50 ${side.p50Ms.at(-1)!.toFixed(3)} ms, p99 ${side.p99Ms.at(-1)!.toFixed(3)} ms`);
      }
    }
    const base = sides[0]!;
    console.log(`\nmedians over ${ROUNDS} rounds (${PUTS} puts x ${WATCHERS} watchers per run; ratio to etcd):`);
    for (const side of sides) {
      const cpu = median(side.cpuPerEventUs);
      const p99 = median(side.p99Ms);
      console.log(
        `  ${side.name.padEnd(28)} ${cpu.toFixed(1).padStart(6)} µs CPU/event (x${(cpu / median(base.cpuPerEventUs)).toFixed(2)})` +
          `  p50 ${median(side.p50Ms).toFixed(3)} ms  p99 ${p99.toFixed(3)} ms (x${(p99 / median(base.p99Ms)).toFixed(2)})`,
      );
    }
  } finally {
    await Promise.all(sides.map((s) => s.member.destroy()));
    await killAllChildren();
  }
}

await main();
