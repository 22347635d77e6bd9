/**
 * Drives etcd's own load generator (`tools/benchmark` of etcd 3.4.23) and parses its report.
 *
 * The tool prints, on stdout, a progress bar followed by a report of this shape (with `--precise`
 * the numbers carry full float precision):
 *
 *     Summary:
 *       Total:	0.9421 secs.
 *       ...
 *       Requests/sec:	2122.9693
 *     Response time histogram: ...
 *     Latency distribution:
 *       10% in 0.0004 secs.
 *       ...
 *       99.9% in 0.0022 secs.
 *     Error distribution:
 *       [12]	rpc error: code = Unavailable desc = ...
 *
 * The summary and the latency lines appear only when at least one request succeeded; the error
 * section only when at least one failed. Requests/sec counts successful requests only.
 * watch-latency prints the same report, with one result per watcher per put (Requests/sec is then
 * watch events per second) and latencies often in exponent notation (e.g. `1.1972e-05 secs`).
 */
import { execFile, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { trackChild } from "../harness/processes.js";

/** What one run of the tool reported. Latencies are in seconds, keyed by percentile ("50", "99.9"). */
export interface BenchmarkReport {
  requestsPerSec: number;
  totalSec: number;
  latencyPercentilesSec: Record<string, number>;
  /** Error message → number of requests that failed with it. */
  errors: Record<string, number>;
}

/** Thrown when the tool's output holds neither a summary nor an error distribution. */
export class BenchmarkOutputError extends Error {
  constructor(message: string, readonly outputTail: string) {
    super(message);
    this.name = "BenchmarkOutputError";
  }
}

const numberPattern = String.raw`([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)`;

/**
 * Parses the tool's stdout. Throws BenchmarkOutputError if the text contains no report at all
 * (the tool crashed or was killed before printing one).
 */
export function parseBenchmarkOutput(text: string): BenchmarkReport {
  const rps = new RegExp(String.raw`Requests/sec:\s*` + numberPattern).exec(text);
  const total = new RegExp(String.raw`Total:\s*` + numberPattern + String.raw` secs`).exec(text);
  const latencyPercentilesSec: Record<string, number> = {};
  const distributionAt = text.indexOf("Latency distribution:");
  if (distributionAt >= 0) {
    const linePattern = new RegExp(String.raw`^\s*([0-9.]+)% in ` + numberPattern + String.raw` secs`, "gm");
    for (const m of text.slice(distributionAt).matchAll(linePattern)) {
      latencyPercentilesSec[m[1]!] = Number(m[2]);
    }
  }
  const errors: Record<string, number> = {};
  const errorsAt = text.indexOf("Error distribution:");
  if (errorsAt >= 0) {
    for (const m of text.slice(errorsAt).matchAll(/^\s*\[([0-9]+)\]\s+(.*)$/gm)) {
      errors[m[2]!.trim()] = (errors[m[2]!.trim()] ?? 0) + Number(m[1]);
    }
  }
  if (rps === null && errorsAt < 0) {
    throw new BenchmarkOutputError("benchmark printed no report", text.slice(-2_000));
  }
  return {
    requestsPerSec: rps === null ? 0 : Number(rps[1]),
    totalSec: total === null ? 0 : Number(total[1]),
    latencyPercentilesSec,
    errors,
  };
}

/** Outcome of a bounded child process run; never thrown, always returned. */
export interface BoundedRunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  stdout: string;
  stderr: string;
  /** Set when the process could not be started or its output exceeded the buffer. */
  spawnError?: Error;
}

export interface BoundedRunOptions {
  timeoutMs: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Upper bound on each of stdout and stderr; the process is killed beyond it. */
  outputBytesMax?: number;
  /** Aborting SIGKILLs the process; the result then has `aborted` set. */
  abortSignal?: AbortSignal;
}

/**
 * Runs `file args` to completion, SIGKILLing it after `timeoutMs`. The child is registered with
 * the test harness so that it cannot outlive this process.
 */
export function runBounded(file: string, args: readonly string[], options: BoundedRunOptions): Promise<BoundedRunResult> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs);
    child = execFile(
      file,
      args,
      {
        cwd: options.cwd,
        env: options.env ?? process.env,
        maxBuffer: options.outputBytesMax ?? 32 * 1024 * 1024,
        killSignal: "SIGKILL",
        encoding: "utf8",
        signal: options.abortSignal,
      },
      (error, stdout, stderr) => {
        clearTimeout(timer);
        const code = child.exitCode;
        const result: BoundedRunResult = {
          exitCode: code,
          signal: child.signalCode,
          timedOut,
          aborted: options.abortSignal?.aborted ?? false,
          stdout: String(stdout),
          stderr: String(stderr),
        };
        // A non-zero exit is reported through exitCode; keep only errors that are not that.
        if (error !== null && code === null && !timedOut && !result.aborted) result.spawnError = error;
        resolve(result);
      },
    );
    trackChild(child);
  });
}

/** One invocation of the tool: global flags plus a subcommand with its own flags. */
export interface BenchmarkInvocation {
  binaryPath: string;
  endpoint: string;
  clients: number;
  conns: number;
  /** Subcommand and its arguments, e.g. ["put", "--val-size=256", "--total=1000"]. */
  command: readonly string[];
  timeoutMs: number;
  /** Aborts the run (e.g. because the server under load went away). */
  abortSignal?: AbortSignal;
}

/** Runs the tool once. Throws (with the output tail) if it timed out, crashed or printed no report. */
export async function runBenchmark(invocation: BenchmarkInvocation): Promise<BenchmarkReport> {
  const args = [
    `--endpoints=${invocation.endpoint}`,
    `--clients=${invocation.clients}`,
    `--conns=${invocation.conns}`,
    "--dial-timeout=5s",
    "--precise",
    ...invocation.command,
  ];
  const run = await runBounded(invocation.binaryPath, args, { timeoutMs: invocation.timeoutMs, abortSignal: invocation.abortSignal });
  const tail = (run.stdout.slice(-1_500) + "\n" + run.stderr.slice(-1_500)).trim();
  if (run.aborted) throw new BenchmarkOutputError(`benchmark ${invocation.command[0]} aborted`, tail);
  if (run.timedOut) {
    throw new BenchmarkOutputError(`benchmark ${invocation.command[0]} timed out after ${invocation.timeoutMs} ms`, tail);
  }
  if (run.spawnError !== undefined) throw new BenchmarkOutputError(`benchmark failed: ${run.spawnError.message}`, tail);
  if (run.exitCode !== 0) {
    throw new BenchmarkOutputError(`benchmark ${invocation.command[0]} exited with ${run.exitCode ?? run.signal}`, tail);
  }
  return parseBenchmarkOutput(run.stdout);
}

/**
 * Returns the path of the tool under `<repoRoot>/.tools/etcd-benchmark`, building it with
 * ../shared/tools/build-etcd-benchmark.sh (offline, from Debian's packages) when it is missing.
 * Throws if the build fails or takes more than 15 minutes.
 */
export async function ensureBenchmarkBinary(repoRoot: string): Promise<string> {
  const binaryPath = path.join(repoRoot, ".tools", "etcd-benchmark");
  if (existsSync(binaryPath)) return binaryPath;
  const script = path.resolve(repoRoot, "..", "shared", "tools", "build-etcd-benchmark.sh");
  if (!existsSync(script)) throw new Error(`etcd benchmark tool missing and no build script at ${script}`);
  console.log(`building etcd's benchmark tool with ${script} ...`);
  const run = await runBounded("bash", [script, binaryPath], { cwd: repoRoot, timeoutMs: 15 * 60_000 });
  if (run.exitCode !== 0 || !existsSync(binaryPath)) {
    throw new Error(`building the benchmark tool failed (${run.timedOut ? "timeout" : run.exitCode}):\n${run.stderr.slice(-3_000)}`);
  }
  return binaryPath;
}

/** A number from the environment within [min, max], or `fallback` when unset or empty; throws otherwise. */
export function envNumber(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) throw new Error(`${name}=${raw}: want a number in [${min}, ${max}]`);
  return value;
}

/** A workload's warm-up request count scaled by BENCH_WARMUP_SCALE, at least 100. */
export function scaledWarmup(total: number, scale: number): number {
  return Math.max(100, Math.round(total * scale));
}
