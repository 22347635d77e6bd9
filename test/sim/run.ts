/**
 * Runner of the cluster simulation of real members (`npm run sim`, real-simulation.ts).
 *
 *   npm run sim                          2,000 seeds (1..2000) on 2 worker processes
 *   SEED=n npm run sim                   replay one run exactly; TRACE=1 prints its trace
 *                                        (TRACE=2 also every message delivered)
 *   SEEDS=a-b npm run sim                the seeds a..b (inclusive)
 *   RUNS=n npm run sim                   the seeds 1..n
 *   SIM_DURATION=10m npm run sim         new seeds (from SIM_BASE_SEED, else a time-derived base)
 *                                        until the time is up
 *   SIM_WORKERS=n                        worker processes (default 2)
 *   SIM_KNOB=name[,name]                 turn on deliberately broken knobs of the real code (to
 *                                        watch the checks fire; KNOB_NAMES in real-simulation.ts)
 *   SIM_PRESET=name                      a named profile preset (PRESETS in real-simulation.ts)
 *
 * Prints `seed=N` and the violated invariant for every failing run, a summary line
 * (`2000 passed, 0 failed`), and exits non-zero on any violation.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { knobsByName, PRESETS, realProfile, runRealSimulation, type RealSimOverrides, type RealSimResult } from "./real-simulation.js";

const env = process.env;

function memberOverridesFromEnv(): RealSimOverrides {
  const preset = env["SIM_PRESET"];
  let o: RealSimOverrides = {};
  if (preset) {
    const p = PRESETS[preset];
    if (!p) throw new Error(`unknown SIM_PRESET ${preset}; known: ${Object.keys(PRESETS).join(", ")}`);
    o = { ...p };
  }
  if (env["SIM_KNOB"]) o.knobs = knobsByName(env["SIM_KNOB"].split(","));
  return o;
}

/** One seed, as the runner reports it. */
async function runSeed(seed: number, trace?: (line: string) => void): Promise<SeedReport> {
  const r = await runRealSimulation(realProfile(seed, memberOverridesFromEnv()), trace);
  const failure = r.failure ?? "";
  const colon = failure.indexOf(": ");
  return {
    seed,
    ok: r.ok,
    ...(r.ok ? {} : { invariant: colon > 0 ? failure.slice(0, colon) : failure, detail: colon > 0 ? failure.slice(colon + 2) : "" }),
    profile: JSON.stringify(r.profile),
    lin: r.linearizability === "undecided" ? "timeout" : "ok",
    stats: r.stats,
  };
}

function parseDurationMs(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new Error(`bad SIM_DURATION ${s} (use e.g. 90s, 10m, 1h)`);
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  return n * (unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000);
}

/** The compact per-seed report a worker sends back. */
interface SeedReport {
  seed: number;
  ok: boolean;
  invariant?: string;
  detail?: string;
  profile: string;
  lin: "ok" | "timeout" | "skipped";
  stats: Partial<RealSimResult["stats"]>;
}

// ---- worker side ----------------------------------------------------------------------------

function workerMain(): void {
  process.on("message", (msg: { seeds?: number[]; stop?: boolean }) => {
    if (msg.stop) process.exit(0);
    void (async () => {
      for (const seed of msg.seeds ?? []) process.send!({ report: await runSeed(seed) });
      process.send!({ idle: true });
    })();
  });
  process.send!({ idle: true });
}

// ---- parent side ----------------------------------------------------------------------------

function printFailure(r: SeedReport, fullDetail: boolean): void {
  const lines = (r.detail ?? "").split("\n");
  const shown = fullDetail ? lines : lines.slice(0, 12);
  console.log(`seed=${r.seed} FAILED ${r.invariant}: ${shown[0]}`);
  for (const l of shown.slice(1)) console.log(`  ${l}`);
  if (!fullDetail && lines.length > shown.length) console.log(`  ... (${lines.length - shown.length} more lines)`);
  console.log(`  profile: ${r.profile}`);
  console.log(`  replay:  SEED=${r.seed} TRACE=1 npm run sim`);
}

interface Totals {
  passed: number;
  failed: number;
  linTimeouts: number;
  linTimeoutSeeds: number[];
  stats: Record<string, number>;
  failures: SeedReport[];
}

function account(t: Totals, r: SeedReport): void {
  if (r.ok) t.passed++;
  else {
    t.failed++;
    t.failures.push(r);
    printFailure(r, false);
  }
  if (r.lin === "timeout") {
    t.linTimeouts++;
    t.linTimeoutSeeds.push(r.seed);
  }
  for (const [k, v] of Object.entries(r.stats)) t.stats[k] = (t.stats[k] ?? 0) + (v ?? 0);
}

async function runMany(nextSeeds: (n: number) => number[] | undefined, workers: number): Promise<Totals> {
  const totals: Totals = { passed: 0, failed: 0, linTimeouts: 0, linTimeoutSeeds: [], stats: {}, failures: [] };
  const self = fileURLToPath(import.meta.url);
  const hangMs = 120_000;
  await new Promise<void>((resolve) => {
    let live = 0;
    const spawn = (): void => {
      const child: ChildProcess = fork(self, [], { env: { ...env, SIM_WORKER: "1" }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
      live++;
      let inHand: number[] = [];
      let lastProgress = performance.now();
      let finished = false;
      const timer = setInterval(() => {
        if (inHand.length > 0 && performance.now() - lastProgress > hangMs) {
          const seed = inHand[0]!;
          account(totals, {
            seed, ok: false, invariant: "hang", detail: `the run did not finish within ${hangMs / 1000}s`,
            profile: "", lin: "skipped", stats: {},
          });
          inHand = [];
          child.kill("SIGKILL");
        }
      }, 1000);
      const give = (): void => {
        const seeds = nextSeeds(10);
        if (!seeds || seeds.length === 0) {
          finished = true;
          child.send({ stop: true });
          return;
        }
        inHand = seeds.slice();
        lastProgress = performance.now();
        child.send({ seeds });
      };
      child.on("message", (msg: { report?: SeedReport; idle?: boolean }) => {
        if (msg.report) {
          lastProgress = performance.now();
          inHand = inHand.filter((s) => s !== msg.report!.seed);
          account(totals, msg.report);
        }
        if (msg.idle) give();
      });
      child.on("exit", (code) => {
        clearInterval(timer);
        live--;
        if (!finished) {
          // The worker died mid-run: the seed in hand is a failure; go on with a new worker.
          if (inHand.length > 0) {
            const seed = inHand[0]!;
            account(totals, {
              seed, ok: false, invariant: "worker died", detail: `exit code ${code}`,
              profile: "", lin: "skipped", stats: {},
            });
            const rest = inHand.slice(1);
            pushBack.push(...rest);
          }
          spawn();
          return;
        }
        if (live === 0) resolve();
      });
    };
    for (let i = 0; i < workers; i++) spawn();
  });
  return totals;
}

/** Seeds handed back by a worker that died, served before new ones. */
const pushBack: number[] = [];

async function main(): Promise<number> {
  if (env["SIM_WORKER"]) {
    workerMain();
    return -1;
  }
  const started = performance.now();

  if (env["SEED"] !== undefined) {
    const r = await runSeed(Number(env["SEED"]), env["TRACE"] && env["TRACE"] !== "0" ? (line) => console.log(line) : undefined);
    console.log(`profile: ${r.profile}`);
    console.log(`stats: ${JSON.stringify(r.stats)}`);
    if (!r.ok) printFailure(r, true);
    console.log(`${r.ok ? "1 passed, 0 failed" : "0 passed, 1 failed"} (seed=${r.seed}) in ${((performance.now() - started) / 1000).toFixed(2)}s`);
    return r.ok ? 0 : 1;
  }
  const workers = Math.max(1, Number(env["SIM_WORKERS"] ?? 2));
  let totals: Totals;
  let label: string;
  if (env["SIM_DURATION"]) {
    const budgetMs = parseDurationMs(env["SIM_DURATION"]);
    const base = env["SIM_BASE_SEED"] !== undefined ? Number(env["SIM_BASE_SEED"]) : 1_000_000 + (Date.now() % 1_000_000_000);
    let next = base;
    console.log(`long mode: ${env["SIM_DURATION"]} from seed ${base}`);
    totals = await runMany((n) => {
      if (pushBack.length > 0) return pushBack.splice(0, n);
      if (performance.now() - started > budgetMs) return undefined;
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push(next++);
      return out;
    }, workers);
    label = `seeds ${base}..${next - 1}`;
  } else {
    let lo = 1;
    let hi = 2000;
    if (env["SEEDS"]) {
      const m = /^(\d+)-(\d+)$/.exec(env["SEEDS"]);
      if (!m) throw new Error(`bad SEEDS ${env["SEEDS"]} (use a-b)`);
      lo = Number(m[1]);
      hi = Number(m[2]);
    } else if (env["RUNS"]) {
      hi = Number(env["RUNS"]);
    }
    let next = lo;
    totals = await runMany((n) => {
      if (pushBack.length > 0) return pushBack.splice(0, n);
      if (next > hi) return undefined;
      const out: number[] = [];
      for (let i = 0; i < n && next <= hi; i++) out.push(next++);
      return out;
    }, workers);
    label = `seeds ${lo}..${hi}`;
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  const s = totals.stats;
  console.log(
    `stats: ${s["ops"] ?? 0} client ops (${s["unknown"] ?? 0} of unknown outcome), ${s["elections"] ?? 0} elections, ` +
      `${s["crashes"] ?? 0} crashes, ${s["readies"] ?? 0} Readies, ${s["messages"] ?? 0} messages, ${s["watchEvents"] ?? 0} watch events, ` +
      `${s["compactedWatchesRefused"] ?? 0} watches from a compacted revision refused`,
  );
  if (totals.linTimeouts > 0) {
    console.log(
      `note: the linearizability check gave up (inconclusive) on ${totals.linTimeouts} runs: seeds ` +
        totals.linTimeoutSeeds.slice(0, 20).join(" "),
    );
  }
  if (totals.failed > 0) console.log(`failing seeds: ${totals.failures.map((f) => f.seed).sort((a, b) => a - b).join(" ")}`);
  console.log(`${totals.passed} passed, ${totals.failed} failed (${label}, ${workers} workers, ${secs}s)`);
  return totals.failed > 0 ? 1 : 0;
}

main().then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e) => {
    console.error(e);
    process.exitCode = 2;
  },
);
