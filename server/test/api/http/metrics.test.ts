/** The metrics' pieces: Go's number format, histogram cells, and the gRPC counting hook. */
import { EventEmitter } from "node:events";
import type { MethodDefinition } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { goFloat } from "../../../src/api/http/metrics.js";
import { GrpcMetrics } from "../../../src/api/v3rpc/grpc-metrics.js";
import { unary } from "../../../src/api/v3rpc/grpc-util.js";
import { exponentialBuckets, HistogramCell } from "../../../src/pkg/metric-cells.js";
import { ServerError } from "../../../src/server/errors.js";

describe("goFloat", () => {
  it("prints numbers as Go's strconv.FormatFloat(v, 'g', -1, 64)", () => {
    const cases: Array<[number, string]> = [
      [0, "0"], [1, "1"], [0.005, "0.005"], [0.0001, "0.0001"], [0.00001, "1e-05"], [3.2768, "3.2768"],
      [819200, "819200"], [8388608, "8.388608e+06"], [2147483648, "2.147483648e+09"], [1e21, "1e+21"],
      [-2.5, "-2.5"], [Infinity, "+Inf"], [NaN, "NaN"], [123456, "123456"], [1234567, "1.234567e+06"],
    ];
    for (const [v, s] of cases) expect(goFloat(v), String(v)).toBe(s);
  });
});

describe("HistogramCell", () => {
  it("counts a value in the first bucket whose bound is at least the value", () => {
    const h = new HistogramCell(exponentialBuckets(0.001, 2, 3)); // 0.001, 0.002, 0.004
    for (const v of [0.001, 0.0015, 0.004, 5]) h.observe(v);
    expect([...h.counts]).toEqual([1, 1, 1, 1]);
    expect(h.count).toBe(4);
    expect(h.sum).toBeCloseTo(5.0065);
  });
});

/** A method definition with only what the metrics read (the codecs are never called here). */
function method(path: string, requestStream: boolean, responseStream: boolean): MethodDefinition<unknown, unknown> {
  return { path, requestStream, responseStream } as unknown as MethodDefinition<unknown, unknown>;
}
const KV_PUT = method("/etcdserverpb.KV/Put", false, false);
const KV_RANGE = method("/etcdserverpb.KV/Range", false, false);
const WATCH = method("/etcdserverpb.Watch/Watch", true, true);

function unaryCall(version?: string): object {
  return { request: {}, metadata: { get: (k: string) => (k === "client-api-version" && version ? [version] : []) }, getPeer: () => "peer" };
}

describe("GrpcMetrics", () => {
  it("counts unary calls per method and status code, every method from the start", async () => {
    const m = new GrpcMetrics({ extensive: true });
    const impl = m.instrument({ put: KV_PUT, range: KV_RANGE }, {
      put: unary(async () => ({})),
      range: unary(async () => {
        throw new ServerError("Timeout");
      }),
    });
    const call = (name: "put" | "range", version?: string): Promise<unknown> =>
      new Promise((resolve) => (impl[name] as (c: object, cb: (e: unknown) => void) => void)(unaryCall(version), resolve));
    await call("put", "3.4");
    await call("put", "3.4");
    expect(await call("range")).toBeTruthy();
    const [put, range] = m.methods;
    expect([put!.type, put!.service, put!.method]).toEqual(["unary", "etcdserverpb.KV", "Put"]);
    expect([put!.started, put!.received, put!.sent, put!.handled[0]]).toEqual([2, 2, 2, 2]);
    expect(put!.handling!.count).toBe(2);
    expect([range!.started, range!.received, range!.sent, range!.handled[0]]).toEqual([1, 1, 0, 0]);
    expect(range!.handled.reduce((a, b) => a + b, 0)).toBe(1);
    expect(m.clientRequests()).toEqual([
      [["unary", "3.4"], 2],
      [["unary", "unknown"], 1],
    ]);
  });

  it("basic metrics keep no handling histogram", () => {
    const m = new GrpcMetrics({ extensive: false });
    m.instrument({ put: KV_PUT }, { put: unary(async () => ({})) });
    expect(m.methods[0]!.handling).toBeUndefined();
  });

  it("counts a stream's messages both ways and its end with its status", () => {
    const m = new GrpcMetrics({ extensive: false });
    const impl = m.instrument({ watch: WATCH }, {
      watch: (stream: EventEmitter & { write(x: unknown): boolean }) => {
        stream.on("data", () => stream.write({}));
      },
    });
    const stream = Object.assign(new EventEmitter(), {
      metadata: { get: () => [] },
      pendingStatus: { code: 0 },
      written: 0,
      write(this: { written: number }): boolean {
        this.written++;
        return true;
      },
    });
    (impl.watch as (s: unknown) => void)(stream);
    stream.emit("data", {});
    stream.emit("data", {});
    stream.emit("finish");
    stream.emit("cancelled"); // after the end: not counted again
    const [w] = m.methods;
    expect(w!.type).toBe("bidi_stream");
    expect([w!.started, w!.received, w!.sent, stream.written, w!.handled[0], w!.handled[1]]).toEqual([1, 2, 2, 2, 1, 0]);
  });
});
