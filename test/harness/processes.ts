/**
 * Bookkeeping for child processes started by cross-process tests, so that nothing outlives the
 * test file: `killAllChildren()` belongs in `afterAll`, and a process-exit hook SIGKILLs whatever
 * is still registered if the test runner itself goes away.
 */
import type { ChildProcess } from "node:child_process";
import net from "node:net";

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Registers a child so that `killAllChildren()` and the exit hook will reap it. */
export function trackChild(child: ChildProcess): void {
  live.add(child);
  child.once("exit", () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const c of live) {
        try {
          c.kill("SIGKILL");
        } catch {
          /* already gone */
        }
      }
    });
  }
}

/** True while the child has neither exited nor been killed by a signal. */
export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * Sends `signal` and waits (bounded) for the child to exit; escalates to SIGKILL after
 * `graceMs`. Resolves once the child is gone (or immediately if it already was).
 */
export async function killChild(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL", graceMs = 5_000): Promise<void> {
  if (!isRunning(child)) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timedOut = await Promise.race([exited.then(() => false), sleep(graceMs).then(() => true)]);
  if (timedOut && isRunning(child)) {
    child.kill("SIGKILL");
    await Promise.race([exited, sleep(5_000)]);
  }
}

/** SIGKILLs every registered child and waits (bounded) for them to exit. */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => killChild(c, "SIGKILL", 5_000)));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Returns a TCP port on `host` that was free a moment ago (the kernel picks it; we close the
 * listener right away). Another process could grab it before we use it; callers that start a
 * server on it should be prepared to retry with a fresh port.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const addr = server.address();
      if (addr === null || typeof addr === "string") {
        server.close();
        reject(new Error("freePort: no address"));
        return;
      }
      const port = addr.port;
      server.close(() => resolve(port));
    });
  });
}

/** `count` distinct free ports. */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const ports = new Set<number>();
  for (let attempt = 0; ports.size < count && attempt < count * 20; attempt++) {
    ports.add(await freePort(host));
  }
  if (ports.size < count) throw new Error(`freePorts: could not find ${count} free ports`);
  return [...ports];
}
