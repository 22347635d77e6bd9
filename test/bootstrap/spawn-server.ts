/**
 * One server process (etcd-ts or real etcd) for the start-up tests, with its output captured:
 * wait for it to exit (refusals) or poll it with etcdctl until it serves.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { repoRoot } from "../harness/member.js";
import { trackChild, sleep } from "../harness/processes.js";
import { runEtcdctl } from "../harness/etcdctl.js";

export interface ServerProcess {
  child: ChildProcess;
  output(): string;
  exited(): Promise<number | null>;
}

/** `which`: "etcd-ts" or "etcd" (/usr/bin/etcd). `wrap` prefixes the command (e.g. unshare). */
export function spawnServer(which: "etcd-ts" | "etcd", args: string[], options: { env?: Record<string, string>; wrap?: string[] } = {}): ServerProcess {
  const cmd = which === "etcd-ts" ? [process.execPath, path.join(repoRoot, "server/bin/etcd-ts.js")] : ["/usr/bin/etcd"];
  const full = [...(options.wrap ?? []), ...cmd, ...args];
  const child = spawn(full[0]!, full.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...(options.env ?? {}) } });
  trackChild(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  return { child, output: () => out, exited: () => exit };
}

/** Polls `etcdctl <args>` until it succeeds; throws with the server's output after `timeoutMs`. */
export async function untilEtcdctl(server: ServerProcess, endpoint: string, args: string[], timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null) throw new Error(`server exited (${server.child.exitCode}):\n${server.output().slice(-3000)}`);
    const r = await runEtcdctl(endpoint, ["--command-timeout=2s", ...args]);
    if (r.code === 0) return r.stdout;
    last = r.stderr;
    await sleep(200);
  }
  throw new Error(`etcdctl ${args.join(" ")} did not succeed: ${last}\n${server.output().slice(-3000)}`);
}
