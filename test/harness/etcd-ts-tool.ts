/** Running the `etcd-ts` binary's offline tools (`snapshot`, `defrag`, `migrate`) to completion. */
import { spawn } from "node:child_process";
import path from "node:path";
import { repoRoot } from "./member.js";
import { trackChild } from "./processes.js";

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `etcd-ts <args>` and captures its output; SIGKILLed after `timeoutMs`. */
export function runEtcdTs(args: string[], timeoutMs = 60_000): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, "server", "bin", "etcd-ts.js"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    trackChild(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/** The last "Error: ..." line a tool wrote on stderr. */
export function errorLine(stderr: string): string | undefined {
  return stderr.trim().split("\n").filter((l) => l.startsWith("Error: ")).at(-1);
}
