/**
 * Running the real `etcdctl` (API v3) against a member: one-shot invocations with optional stdin
 * (interactive txn), and background invocations (watch) that are stopped by the test.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { isRunning, killChild, sleep, trackChild } from "./processes.js";

/** `ETCDCTL_BIN`, default /usr/bin/etcdctl. */
export function etcdctlPath(): string {
  return process.env.ETCDCTL_BIN ?? "/usr/bin/etcdctl";
}

export interface EtcdctlResult {
  stdout: string;
  /** stdout exactly as written (for `-w protobuf`). */
  stdoutBytes: Buffer;
  stderr: string;
  /** Exit code, or null if the process was ended by a signal. */
  code: number | null;
  /** Signal that ended the process, if any. */
  signal: NodeJS.Signals | null;
}

export interface EtcdctlOptions {
  /** Written to stdin, which is then closed. Without it stdin is empty (closed at once). */
  stdin?: string;
  /** Kill (SIGKILL) after this long; default 15 s. The result then has signal "SIGKILL". */
  timeoutMs?: number;
  /** Extra environment (ETCDCTL_API=3 is always set). */
  env?: Record<string, string>;
}

function etcdctlEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ETCDCTL_API: "3", ...(extra ?? {}) };
  // Flags from the caller's shell must not leak into the comparison.
  for (const k of Object.keys(env)) {
    if (k.startsWith("ETCDCTL_") && k !== "ETCDCTL_API" && !(extra && k in extra)) delete env[k];
  }
  return env;
}

/** Runs `etcdctl --endpoints=<endpoint> <args>` to completion and captures everything. */
export function runEtcdctl(endpoint: string, args: string[], options: EtcdctlOptions = {}): Promise<EtcdctlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(etcdctlPath(), [`--endpoints=${endpoint}`, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: etcdctlEnv(options.env),
    });
    trackChild(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (c: Buffer) => out.push(c));
    child.stderr!.on("data", (c: Buffer) => err.push(c));
    child.stdin!.on("error", () => {
      /* etcdctl may exit before reading all of stdin */
    });
    child.stdin!.end(options.stdin ?? "");
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 15_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const bytes = Buffer.concat(out);
      resolve({
        stdout: bytes.toString("utf8"),
        stdoutBytes: bytes,
        stderr: Buffer.concat(err).toString("utf8"),
        code,
        signal,
      });
    });
  });
}

/**
 * A long-running etcdctl (e.g. `watch`). Output accumulates until `stop()`; stdin stays open
 * (for `watch -i`) until `closeStdin()` or `stop()`.
 */
export class BackgroundEtcdctl {
  private readonly out: Buffer[] = [];
  private readonly err: Buffer[] = [];
  private readonly closed: Promise<EtcdctlResult>;

  constructor(
    private readonly child: ChildProcess,
    private readonly outputBytesMax = 64 * 1024 * 1024,
  ) {
    let size = 0;
    const keep = (list: Buffer[]) => (c: Buffer) => {
      size += c.length;
      if (size > this.outputBytesMax) {
        child.kill("SIGKILL");
        return;
      }
      list.push(c);
    };
    child.stdout!.on("data", keep(this.out));
    child.stderr!.on("data", keep(this.err));
    child.stdin!.on("error", () => {
      /* the process may have exited */
    });
    this.closed = new Promise((resolve) => {
      child.once("close", (code, signal) => resolve({ ...this.snapshot(), code, signal }));
    });
  }

  get stdout(): string {
    return Buffer.concat(this.out).toString("utf8");
  }

  get stderr(): string {
    return Buffer.concat(this.err).toString("utf8");
  }

  private snapshot(): { stdout: string; stdoutBytes: Buffer; stderr: string } {
    return { stdout: this.stdout, stdoutBytes: Buffer.concat(this.out), stderr: this.stderr };
  }

  /** Writes one chunk to stdin. */
  write(text: string): void {
    this.child.stdin!.write(text);
  }

  closeStdin(): void {
    this.child.stdin!.end();
  }

  /**
   * Waits until `predicate(stdout)` holds, the process exits, or `timeoutMs` passes. Returns
   * whether the predicate held.
   */
  async waitFor(predicate: (stdout: string) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (predicate(this.stdout)) return true;
      if (!isRunning(this.child)) return predicate(this.stdout);
      await sleep(20);
    }
    return predicate(this.stdout);
  }

  /**
   * Waits until nothing more has come on stdout for `quietMs` (at most `timeoutMs`): etcdctl
   * prints an event's lines as separate writes, which may arrive in separate chunks.
   */
  async settle(quietMs = 100, timeoutMs = 1_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let seen = this.out.length;
    let quietSince = Date.now();
    while (Date.now() < deadline && isRunning(this.child)) {
      await sleep(20);
      if (this.out.length !== seen) {
        seen = this.out.length;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= quietMs) {
        return;
      }
    }
  }

  /** Resolves when the process exits by itself (bounded: SIGKILL after `timeoutMs`). */
  async wait(timeoutMs = 15_000): Promise<EtcdctlResult> {
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    try {
      return await this.closed;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops the process with `signal` (default SIGTERM) and returns everything it printed. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<EtcdctlResult> {
    await killChild(this.child, signal, 5_000);
    return this.closed;
  }
}

/** Starts `etcdctl --endpoints=<endpoint> <args>` in the background. */
export function spawnEtcdctl(endpoint: string, args: string[], options: { env?: Record<string, string> } = {}): BackgroundEtcdctl {
  const child = spawn(etcdctlPath(), [`--endpoints=${endpoint}`, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: etcdctlEnv(options.env),
  });
  trackChild(child);
  return new BackgroundEtcdctl(child);
}
