/**
 * Starts single-member servers for the benchmark: the reference etcd (Debian's /usr/bin/etcd 3.4)
 * or etcd-ts (`node server/bin/etcd-ts.js`), both with etcd's flags, on fresh loopback ports and a fresh
 * data directory, and stops them again.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePorts, isRunning, killChild, sleep, trackChild } from "../harness/processes.js";
import { runBounded } from "./lib-etcd-benchmark.js";

export type ServerKind = "etcd" | "etcd-ts";

export interface ServerStartOptions {
  kind: ServerKind;
  /** Member name (--name). */
  name: string;
  repoRoot: string;
  /** Path of the reference etcd binary. */
  etcdBinaryPath: string;
  /** etcd-ts only: run node with --cpu-prof, writing the profile into this directory on exit. */
  cpuProfileDir?: string;
  /** Readiness: this key is put (with etcdctl) until the put succeeds, so it exists afterwards. */
  seedKey: string;
  seedValue: string;
  startTimeoutMs: number;
  /** More server flags (both kinds take etcd's), e.g. --quota-backend-bytes. */
  extraFlags?: string[];
}

/** A server started by startServer. Call stop() exactly once; it is safe after a crash too. */
export class BenchServer {
  /** Resolves once the process has exited, however that came about. */
  readonly exited: Promise<void>;

  /** `child` must have been spawned just now (its exit cannot have been missed). */
  constructor(
    readonly kind: ServerKind,
    readonly endpoint: string,
    private readonly child: ChildProcess,
    private readonly baseDir: string,
    readonly logPath: string,
  ) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return isRunning(this.child);
  }

  /** Peak resident set size so far (VmHWM) in KiB, or undefined if the process is gone. */
  peakRssKiB(): number | undefined {
    return readPeakRssKiB(this.pid);
  }

  /** "code N" or "signal S" once the process has exited; "running" before. */
  exitStatus(): string {
    if (this.child.exitCode !== null) return `code ${this.child.exitCode}`;
    if (this.child.signalCode !== null) return `signal ${this.child.signalCode}`;
    return "running";
  }

  logTail(bytes = 3_000): string {
    return readTail(this.logPath, bytes);
  }

  /**
   * SIGTERM, then SIGKILL after `graceMs` (etcd-ts needs a clean exit to write its CPU profile),
   * then removes the data directory (keeps it if `keepFiles`).
   */
  async stop(graceMs = 15_000, keepFiles = false): Promise<void> {
    await killChild(this.child, "SIGTERM", graceMs);
    if (!keepFiles) rmSync(this.baseDir, { recursive: true, force: true });
  }
}

/** VmHWM of `pid` in KiB from /proc/<pid>/status; undefined if unreadable. */
export function readPeakRssKiB(pid: number): number | undefined {
  return readStatusKiB(pid, "VmHWM");
}

/** A KiB field (VmRSS, VmHWM, ...) of /proc/<pid>/status; undefined if unreadable. */
export function readStatusKiB(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s*([0-9]+)\\s*kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

function readTail(file: string, bytes: number): string {
  try {
    const text = readFileSync(file, "utf8");
    return text.slice(-bytes);
  } catch {
    return "";
  }
}

/** Puts key=value with the reference etcdctl; true on success. Bounded by a few seconds. */
export async function etcdctlPut(endpoint: string, key: string, value: string): Promise<boolean> {
  const run = await runBounded(
    "etcdctl",
    [`--endpoints=${endpoint}`, "--dial-timeout=2s", "--command-timeout=3s", "put", key, value],
    { timeoutMs: 8_000, env: { ...process.env, ETCDCTL_API: "3" } },
  );
  return run.exitCode === 0 && run.stdout.trim() === "OK";
}

function serverCommand(options: ServerStartOptions, flags: string[]): { file: string; args: string[] } {
  if (options.kind === "etcd") return { file: options.etcdBinaryPath, args: flags };
  const nodeFlags = options.cpuProfileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`];
  return { file: process.execPath, args: [...nodeFlags, path.join(options.repoRoot, "server", "bin", "etcd-ts.js"), ...flags] };
}

/** startServer gave up; `exited` tells whether the process went away (rather than hanging). */
export class ServerStartError extends Error {
  constructor(
    message: string,
    readonly exited: boolean,
  ) {
    super(message);
    this.name = "ServerStartError";
  }
}

const startAttemptsMax = 3;

/**
 * Starts one single-member server and waits until it accepts a write (the seed key).
 * Retries with fresh ports if a port was taken meanwhile. Throws ServerStartError (with the log
 * tail) if the server exits or is not writable within `startTimeoutMs`; nothing is left running
 * in that case, and its log and data directory are kept.
 */
export async function startServer(options: ServerStartOptions): Promise<BenchServer> {
  let lastError: ServerStartError | undefined;
  for (let attempt = 1; attempt <= startAttemptsMax; attempt++) {
    const baseDir = mkdtempSync(path.join(os.tmpdir(), `etcd-bench-${options.kind}-`));
    const [clientPort, peerPort] = await freePorts(2);
    const clientUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const flags = [
      `--name=${options.name}`,
      `--data-dir=${path.join(baseDir, "data")}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${options.name}=${peerUrl}`,
      ...(options.extraFlags ?? []),
    ];
    const logPath = path.join(baseDir, "server.log");
    const logFd = openSync(logPath, "a");
    const { file, args } = serverCommand(options, flags);
    const child = spawn(file, args, { cwd: options.repoRoot, stdio: ["ignore", logFd, logFd] });
    closeSync(logFd);
    trackChild(child);
    const server = new BenchServer(options.kind, `127.0.0.1:${clientPort}`, child, baseDir, logPath);
    const spawnFailure = new Promise<Error>((resolve) => child.once("error", resolve));
    const ready = await waitWritable(server, options, spawnFailure);
    if (ready === true) return server;
    lastError = new ServerStartError(
      `${options.kind} did not become writable: ${ready}; log kept at ${logPath}\n--- log tail ---\n${server.logTail()}`,
      !server.running,
    );
    const portTaken = /address already in use|EADDRINUSE/i.test(server.logTail(20_000));
    await server.stop(2_000, true);
    if (!portTaken) break;
  }
  throw lastError!;
}

async function waitWritable(server: BenchServer, options: ServerStartOptions, spawnFailure: Promise<Error>): Promise<true | string> {
  let failure: string | undefined;
  void spawnFailure.then((e) => (failure = `spawn failed: ${e.message}`));
  const deadline = Date.now() + options.startTimeoutMs;
  for (let probe = 0; probe < 1_000 && Date.now() < deadline; probe++) {
    if (failure !== undefined) return failure;
    if (!server.running) return `process exited (${server.exitStatus()})`;
    // etcdctl waits out its whole dial timeout on a closed port; a plain connect fails fast.
    if ((await canConnect(server.endpoint)) && await etcdctlPut(server.endpoint, options.seedKey, options.seedValue)) return true;
    await sleep(200);
  }
  return failure ?? `timeout after ${options.startTimeoutMs} ms`;
}

function canConnect(endpoint: string): Promise<boolean> {
  const [host, port] = endpoint.split(":");
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: Number(port) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
