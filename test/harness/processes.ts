/**
 * Bookkeeping for child processes started by cross-process tests, so that nothing outlives the
 * test file: `killAllChildren()` belongs in `afterAll`, and a process-exit hook SIGKILLs whatever
 * is still registered if the test runner itself goes away.
 */
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
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
 * The lowest port the kernel hands out as an ephemeral (outgoing) port. Ports below it are only
 * ever taken by listeners: a port picked there cannot be grabbed meanwhile as the source port of
 * some connection of a parallel test, which is how a port the kernel picked for us (bound to
 * port 0) got lost to EADDRINUSE before the server under test could bind it.
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 11_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

const PORT_LOW = 10_000;
let portHigh: number | undefined;

function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * Returns a TCP port on `host` that was free a moment ago: a random one between 10000 and the
 * kernel's ephemeral range (see ephemeralLow), checked by binding it. Another listener could
 * still take it before we use it; callers that start a server on it should be prepared to retry
 * with a fresh port.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  portHigh ??= ephemeralLow();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PORT_LOW + Math.floor(Math.random() * (portHigh - PORT_LOW));
    if (await canListen(host, port)) return port;
  }
  throw new Error(`freePort: no free port on ${host} in [${PORT_LOW}, ${portHigh})`);
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
