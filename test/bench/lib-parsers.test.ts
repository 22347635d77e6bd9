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

describe("parseBenchmarkOutput", () => {
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
