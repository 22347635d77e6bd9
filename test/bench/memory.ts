/**
 * `npm run bench:memory`: memory under load, etcd 3.4 beside etcd-ts. For each load, a fresh
 * single-member server of each kind (one after the other, so they do not share the machine's
 * memory) takes the same puts from etcd's own load generator; reported per server:
 *
 * - peak RSS (VmHWM) over the load, and RSS once the load is over;
 * - heap in use after the load: etcd-ts's V8 heap and external memory (`nodejs_heap_size_used_bytes`,
 *   `nodejs_external_memory_bytes`), etcd's Go heap (`go_memstats_heap_inuse_bytes`);
 * - correctness: the number of keys the server holds afterwards (a range's count) must be
 *   exactly the loaded key space plus the seed key, and a sample of keys must read back.
 *
 * Loads (MEMORY_LOADS=a,b picks some):
 *   keys-256b   MEMORY_KEYS (default 1,000,000) distinct keys of 256-byte values
 *   keys-8k     MEMORY_KEYS_8K (default 100,000) distinct keys of 8 KiB values
 *   quota       puts of 8 KiB values into a server started with --quota-backend-bytes=64 MiB until
 *               it refuses them ("database space exceeded"); then reads must still work, the
 *               NOSPACE alarm must be raised, and RSS is reported under the quota
 * Environment: MEMORY_TARGETS=etcd,etcd-ts (order), BENCH_ETCD_BIN, BENCH_NO_BUILD=1,
 * MEMORY_OUT=.tools/memory-results.json.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { killAllChildren, sleep } from "../harness/processes.js";
import { ensureBenchmarkBinary, runBenchmark } from "./lib-etcd-benchmark.js";
import { readStatusKiB, startServer, type BenchServer, type ServerKind } from "./lib-servers.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const etcdBinaryPath = process.env.BENCH_ETCD_BIN ?? "/usr/bin/etcd";
const targets = (process.env.MEMORY_TARGETS ?? "etcd,etcd-ts").split(",") as ServerKind[];
const outPath = path.resolve(process.env.MEMORY_OUT ?? path.join(repoRoot, ".tools", "memory-results.json"));

interface Load {
  name: string;
  keys: number;
  valueBytes: number;
  flags: string[];
  /** Expect the server to refuse writes at its quota. */
  quota: boolean;
}

const allLoads: Load[] = [
  { name: "keys-256b", keys: Number(process.env.MEMORY_KEYS ?? 1_000_000), valueBytes: 256, flags: [], quota: false },
  { name: "keys-8k", keys: Number(process.env.MEMORY_KEYS_8K ?? 100_000), valueBytes: 8192, flags: [], quota: false },
  { name: "quota", keys: 20_000, valueBytes: 8192, flags: [`--quota-backend-bytes=${64 * 1024 * 1024}`], quota: true },
];
const picked = process.env.MEMORY_LOADS?.split(",");
const loads = allLoads.filter((l) => picked === undefined || picked.includes(l.name));

interface Result {
  load: string;
  server: ServerKind;
  putsPerSec: number;
  errors: Record<string, number>;
  peakRssMiB: number;
  rssAfterMiB: number;
  heapUsedMiB: number | undefined;
  externalMiB: number | undefined;
  keysHeld: number;
  sampleOk: boolean;
  alarm: string;
}

async function scrape(server: BenchServer): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    const res = await fetch(`http://${server.endpoint}/metrics`);
    for (const line of (await res.text()).split("\n")) {
      const m = /^([a-z_]+) ([0-9.e+-]+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
  } catch {
    /* no metrics */
  }
  return out;
}

function etcdctl(endpoint: string, args: string[]): string {
  try {
    return execFileSync("etcdctl", [`--endpoints=${endpoint}`, "--command-timeout=30s", ...args], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? "") + String((err as { stderr?: string }).stderr ?? "");
  }
}

async function measure(load: Load, kind: ServerKind, tool: string): Promise<Result> {
  const server = await startServer({ kind, name: "mem", repoRoot, etcdBinaryPath, seedKey: "memory-seed", seedValue: "s", startTimeoutMs: 60_000, extraFlags: load.flags });
  let peakKiB = 0;
  const sampler = setInterval(() => {
    peakKiB = Math.max(peakKiB, readStatusKiB(server.pid, "VmRSS") ?? 0);
  }, 250);
  try {
    const report = await runBenchmark({
      binaryPath: tool,
      endpoint: server.endpoint,
      clients: 100,
      conns: 10,
      command: ["put", "--key-size=8", `--key-space-size=${load.keys}`, "--sequential-keys", `--val-size=${load.valueBytes}`, `--total=${load.keys}`],
      timeoutMs: 3_600_000,
    });
    await sleep(2_000);
    const metrics = await scrape(server);
    const heap = kind === "etcd-ts" ? metrics.get("nodejs_heap_size_used_bytes") : metrics.get("go_memstats_heap_inuse_bytes");
    const external = kind === "etcd-ts" ? metrics.get("nodejs_external_memory_bytes") : undefined;
    // A range's count is the number of keys in it, whatever its limit.
    const count = /"count":(\d+)/.exec(etcdctl(server.endpoint, ["get", "", "--from-key", "--limit=1", "-w", "json"]));
    // The load generator's keys are 8-byte varints of 0..keys-1 (sequential): read a few back.
    const sample = etcdctl(server.endpoint, ["get", "", "--from-key", "--limit=3", "--keys-only"]);
    const alarm = etcdctl(server.endpoint, ["alarm", "list"]).trim();
    return {
      load: load.name,
      server: kind,
      putsPerSec: Math.round(report.requestsPerSec),
      errors: report.errors,
      peakRssMiB: Math.round(Math.max(peakKiB, server.peakRssKiB() ?? 0) / 1024),
      rssAfterMiB: Math.round((readStatusKiB(server.pid, "VmRSS") ?? 0) / 1024),
      heapUsedMiB: heap === undefined ? undefined : Math.round(heap / 1048576),
      externalMiB: external === undefined ? undefined : Math.round(external / 1048576),
      keysHeld: count ? Number(count[1]) : -1,
      sampleOk: sample.trim().split("\n").filter((l) => l !== "").length === 3,
      alarm,
    };
  } finally {
    clearInterval(sampler);
    await server.stop();
  }
}

async function main(): Promise<void> {
  if (process.env.BENCH_NO_BUILD !== "1") execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "inherit" });
  const tool = await ensureBenchmarkBinary(repoRoot);
  const results: Result[] = [];
  let failed = false;
  for (const load of loads) {
    for (const kind of targets) {
      console.log(`\n${load.name} on ${kind}: ${load.keys} puts of ${load.valueBytes} B ${load.flags.join(" ")}`);
      const r = await measure(load, kind, tool);
      results.push(r);
      console.log(JSON.stringify(r));
      // Correct either way: every key held, or at the quota a NOSPACE alarm and reads still served.
      if (load.quota) {
        const refused = Object.keys(r.errors).some((e) => e.includes("database space exceeded"));
        if (!refused || !/NOSPACE/.test(r.alarm) || r.keysHeld < 1 || !r.sampleOk) {
          console.error(`${kind}: at its quota the server should refuse puts with NOSPACE and keep serving reads`);
          failed = true;
        }
      } else if (r.keysHeld !== load.keys + 1 || !r.sampleOk || Object.keys(r.errors).length > 0) {
        console.error(`${kind}: holds ${r.keysHeld} keys, expected ${load.keys + 1}; errors ${JSON.stringify(r.errors)}`);
        failed = true;
      }
    }
  }
  console.log("\nload        server    puts/s  peak RSS  RSS after  heap    external  keys held");
  for (const r of results) {
    console.log(
      `${r.load.padEnd(11)} ${r.server.padEnd(8)} ${String(r.putsPerSec).padStart(7)} ${`${r.peakRssMiB} MiB`.padStart(9)} ${`${r.rssAfterMiB} MiB`.padStart(10)} ${`${r.heapUsedMiB ?? "-"} MiB`.padStart(8)} ${`${r.externalMiB ?? "-"} MiB`.padStart(9)}  ${r.keysHeld}`,
    );
  }
  for (const load of loads) {
    const [a, b] = targets.map((t) => results.find((r) => r.load === load.name && r.server === t));
    if (a && b) console.log(`${load.name}: peak RSS ${b.server}/${a.server} = ${(b.peakRssMiB / a.peakRssMiB).toFixed(2)}`);
  }
  mkdirSync(path.dirname(outPath), { recursive: true });
  writeFileSync(outPath, JSON.stringify({ when: new Date().toISOString(), results }, null, 2));
  if (failed) process.exitCode = 1;
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => void killAllChildren());
