import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { summarizeCpuProfiles } from "./lib-cpuprofile.js";
import { BenchmarkOutputError, parseBenchmarkOutput } from "./lib-etcd-benchmark.js";

// Output of etcd 3.4.23's tools/benchmark (put, --precise), progress bar included.
const putOutput = ` 394 / 2000   19.70% 2000 / 2000  100.00% 0s

Summary:
  Total:\t0.9421446 secs.
  Slowest:\t0.005123 secs.
  Fastest:\t0.000301 secs.
  Average:\t0.000471 secs.
  Stddev:\t0.000212 secs.
  Requests/sec:\t2122.9693221

Response time histogram:
  0.0003 [1]\t|
  0.0008 [1968]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎

Latency distribution:
  10% in 0.000389 secs.
  50% in 0.000412 secs.
  99% in 0.0011 secs.
  99.9% in 2.2e-03 secs.
`;

// Output of etcd 3.4.23's tools/benchmark watch-latency (--clients=10 --conns=2 --precise
// --put-rate=1000 --total=2000) against etcd 3.4.23: one result per watcher per put, so
// Requests/sec counts watch events; histogram bars shortened.
const watchLatencyOutput =
  "\r 0 / 2000    0.00%\r 235 / 2000   11.75% 00m01s\r 1906 / 2000   95.30%\r 2000 / 2000  100.00% 1s\n" +
  `
Summary:
  Total:\t1.466612558 secs.
  Slowest:\t0.001326138 secs.
  Fastest:\t1.033e-06 secs.
  Average:\t3.430404954999989e-05 secs.
  Stddev:\t5.8372652486157535e-05 secs.
  Requests/sec:\t13636.866731370235

Response time histogram:
  1.033e-06 [1]\t|
  0.0001335435 [19008]\t|∎∎∎∎
  0.000266054 [844]\t|∎∎∎∎
  0.00039856449999999997 [97]\t|
  0.000531075 [17]\t|
  0.0006635855 [11]\t|
  0.0007960959999999999 [8]\t|
  0.0009286065 [8]\t|
  0.0010611169999999999 [0]\t|
  0.0011936274999999998 [2]\t|
  0.001326138 [4]\t|

Latency distribution:
  10% in 3.356e-06 secs.
  25% in 5.6e-06 secs.
  50% in 1.1972e-05 secs.
  75% in 4.2239e-05 secs.
  90% in 9.0288e-05 secs.
  95% in 0.000132851 secs.
  99% in 0.000245275 secs.
  99.9% in 0.000712301 secs.
`;

describe("parseBenchmarkOutput", () => {
  it("reads watch-latency's report: events/s and microsecond latencies in exponent notation", () => {
    const report = parseBenchmarkOutput(watchLatencyOutput);
    expect(report.requestsPerSec).toBeCloseTo(13636.866731370235, 6);
    expect(report.totalSec).toBeCloseTo(1.466612558, 9);
    expect(report.latencyPercentilesSec).toEqual({
      "10": 3.356e-6,
      "25": 5.6e-6,
      "50": 1.1972e-5,
      "75": 4.2239e-5,
      "90": 9.0288e-5,
      "95": 0.000132851,
      "99": 0.000245275,
      "99.9": 0.000712301,
    });
    expect(report.errors).toEqual({});
  });

  it("reads requests/sec, total and the latency percentiles", () => {
    const report = parseBenchmarkOutput(putOutput);
    expect(report.requestsPerSec).toBeCloseTo(2122.9693221, 6);
    expect(report.totalSec).toBeCloseTo(0.9421446, 7);
    expect(report.latencyPercentilesSec).toEqual({ "10": 0.000389, "50": 0.000412, "99": 0.0011, "99.9": 0.0022 });
    expect(report.errors).toEqual({});
  });

  it("reads the error distribution, with or without successful requests", () => {
    const withErrors = `${putOutput}
Error distribution:
  [3]\trpc error: code = Unavailable desc = transport is closing
  [1]\tetcdserver: request timed out
`;
    expect(parseBenchmarkOutput(withErrors).errors).toEqual({
      "rpc error: code = Unavailable desc = transport is closing": 3,
      "etcdserver: request timed out": 1,
    });
    const onlyErrors = parseBenchmarkOutput("\nError distribution:\n  [10]\tetcdserver: no leader\n");
    expect(onlyErrors.requestsPerSec).toBe(0);
    expect(onlyErrors.latencyPercentilesSec).toEqual({});
    expect(onlyErrors.errors).toEqual({ "etcdserver: no leader": 10 });
  });

  it("rejects output without a report", () => {
    expect(() => parseBenchmarkOutput(" 10 / 2000   0.50%")).toThrow(BenchmarkOutputError);
  });
});

describe("summarizeCpuProfiles", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cpuprofile-test-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("charges each sample the time until the next one and groups by function and line", () => {
    const frame = (functionName: string, url: string, lineNumber: number) => ({ functionName, url, lineNumber, columnNumber: 0, scriptId: "1" });
    const profile = {
      nodes: [
        { id: 1, callFrame: frame("(root)", "", -1), children: [2, 3, 4] },
        { id: 2, callFrame: frame("applyPut", "file:///repo/server/src/mvcc/kv.js", 9), children: [] },
        { id: 3, callFrame: frame("(idle)", "", -1), children: [] },
        { id: 4, callFrame: frame("", "file:///repo/server/src/x.js", 0), children: [5] },
        { id: 5, callFrame: frame("applyPut", "file:///repo/server/src/mvcc/kv.js", 9), children: [] },
      ],
      startTime: 0,
      endTime: 1_000,
      samples: [2, 5, 3, 4, 2],
      timeDeltas: [0, 100, 300, 50, 200],
    };
    const file = path.join(dir, "a.cpuprofile");
    writeFileSync(file, JSON.stringify(profile));
    const summary = summarizeCpuProfiles([file, file], 10, "file:///repo/");
    // Per profile: applyPut 100 + 300 µs, idle 50 µs, anonymous 200 µs; the last sample is not charged.
    expect(summary.idleMs).toBeCloseTo(0.1, 6);
    expect(summary.busyMs).toBeCloseTo(1.2, 6);
    expect(summary.rows.map((r) => [r.functionName, r.location, r.selfMs])).toEqual([
      ["applyPut", "server/src/mvcc/kv.js:10", 0.8],
      ["(anonymous)", "server/src/x.js:1", 0.4],
    ]);
    expect(summary.rows[0]!.selfPercent).toBeCloseTo(66.667, 2);
  });
});
