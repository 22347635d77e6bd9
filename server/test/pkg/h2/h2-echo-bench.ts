/**
 * Micro-benchmark (not part of the test run): gRPC unary echo round trips per second and the
 * server's CPU per call, over pkg/h2 and over node:http2 with the same handler, called by the
 * same @grpc/grpc-js client. The server runs in a child process so its CPU is measured alone.
 *
 *   npx tsx server/test/pkg/h2/h2-echo-bench.ts [seconds=5] [concurrency=32] [rounds=3] [bytes=100]
 */
import { fork } from "node:child_process";
import type * as net from "node:net";
import { fileURLToPath } from "node:url";
import { call, echoClient, listenNode, listenOurs } from "./grpc-echo.js";

const self = fileURLToPath(import.meta.url);

async function serve(mode: string): Promise<void> {
  const server = mode === "ours" ? await listenOurs() : await listenNode();
  const port = (server.address() as net.AddressInfo).port;
  process.on("message", (m: string) => {
    if (m === "cpu") {
      const u = process.cpuUsage();
      process.send!({ cpuUs: u.user + u.system });
    } else if (m === "exit") process.exit(0);
  });
  process.send!({ port });
}

interface Result {
  callsPerSec: number;
  serverCpuUsPerCall: number;
  clientCpuUsPerCall: number;
}

async function runOne(mode: string, seconds: number, concurrency: number, bytes: number): Promise<Result> {
  // H2_BENCH_PROF=dir writes a CPU profile of each server child there
  const prof = process.env.H2_BENCH_PROF;
  const execArgv = ["--import", "tsx", ...(prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [])];
  const child = fork(self, ["serve", mode], { execArgv });
  const next = (): Promise<{ port?: number; cpuUs?: number }> => new Promise((resolve) => child.once("message", resolve as never));
  const { port } = await next();
  const client = echoClient(port!);
  const req = Buffer.alloc(bytes, 1);
  // warm up
  for (let i = 0; i < 2000; i++) await call(client, "Echo", req);
  child.send("cpu");
  const cpu0 = (await next()).cpuUs!;
  const t0 = process.hrtime.bigint();
  const clientCpu0 = process.cpuUsage();
  const deadline = Date.now() + seconds * 1000;
  let calls = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < deadline) {
        await call(client, "Echo", req);
        calls++;
      }
    }),
  );
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;
  const clientCpu = process.cpuUsage(clientCpu0);
  child.send("cpu");
  const cpu1 = (await next()).cpuUs!;
  client.close();
  child.send("exit");
  await new Promise((r) => child.once("exit", r));
  return {
    callsPerSec: calls / elapsedS,
    serverCpuUsPerCall: (cpu1 - cpu0) / calls,
    clientCpuUsPerCall: (clientCpu.user + clientCpu.system) / calls,
  };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const [seconds = 5, concurrency = 32, rounds = 3, bytes = 100] = process.argv.slice(2).map(Number);
  const results: Record<string, Result[]> = { ours: [], node: [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of ["ours", "node"]) {
      const res = await runOne(mode, seconds, concurrency, bytes);
      results[mode]!.push(res);
      console.log(
        `round ${r} ${mode}: ${res.callsPerSec.toFixed(0)} calls/s, server ${res.serverCpuUsPerCall.toFixed(1)} µs CPU/call, client ${res.clientCpuUsPerCall.toFixed(1)} µs CPU/call`,
      );
    }
  }
  for (const mode of ["ours", "node"]) {
    const rs = results[mode]!;
    console.log(
      `median ${mode}: ${median(rs.map((x) => x.callsPerSec)).toFixed(0)} calls/s, server ${median(rs.map((x) => x.serverCpuUsPerCall)).toFixed(1)} µs CPU/call, client ${median(rs.map((x) => x.clientCpuUsPerCall)).toFixed(1)} µs CPU/call`,
    );
  }
}

if (process.argv[2] === "serve") void serve(process.argv[3]!);
else void main();
