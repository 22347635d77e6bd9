/**
 * Distributed tracing end to end: the real etcd-ts binary, started with etcd 3.5's tracing flags,
 * exports to an OTLP/gRPC receiver this test runs (TraceService/Export, decoded with the protocol
 * subset in otlp-trace.proto). A put and a linearizable range carry a W3C `traceparent` in their
 * metadata; the received spans must continue that trace under the client's span and show the
 * stages each request went through. Requests without a sampled parent are not exported (the
 * default sampling rate is 0 per million, and a parent's "not sampled" is followed).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KVClient, PutRequest, RangeRequest, type PutResponse, type RangeResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { etcdTsBinary, startMember, type Member } from "../harness/member.js";
import { ConfigError, resolveConfig } from "../../server/src/etcdmain/config.js";
import { FlagError } from "../../server/src/pkg/flag-set.js";
import { freePort, sleep } from "../harness/processes.js";

interface OtlpValue {
  stringValue?: string;
}
interface OtlpSpan {
  traceId: Buffer;
  spanId: Buffer;
  parentSpanId: Buffer;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: OtlpValue }[];
  events: { name: string }[];
}
interface ExportRequest {
  resourceSpans: { resource?: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
}

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVER_KIND = 2; // OTLP's SPAN_KIND_SERVER

/** The OTLP receiver: keeps every span it is sent, with its resource's attributes. */
class OtlpReceiver {
  readonly spans: { span: OtlpSpan; resource: Map<string, string> }[] = [];
  private readonly server = new grpc.Server();

  async listen(): Promise<number> {
    const def = protoLoader.loadSync(path.join(here, "otlp-trace.proto"), { longs: String, defaults: true, arrays: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    this.server.addService(pkg.opentelemetry.proto.collector.trace.v1.TraceService.service, {
      Export: (call: grpc.ServerUnaryCall<ExportRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        for (const rs of call.request.resourceSpans) {
          const resource = new Map((rs.resource?.attributes ?? []).map((a) => [a.key, a.value.stringValue ?? ""]));
          for (const ss of rs.scopeSpans) for (const span of ss.spans) this.spans.push({ span, resource });
        }
        callback(null, {});
      },
    });
    const port = await freePort();
    await new Promise<void>((resolve, reject) => this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    return port;
  }

  /** Waits until a span satisfying `pred` arrives (spans leave the member in batches, about every second). */
  async waitFor(pred: (s: OtlpSpan) => boolean, timeoutMs = 20_000): Promise<OtlpSpan> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.spans.find((s) => pred(s.span));
      if (found) return found.span;
      if (Date.now() > deadline) throw new Error(`span not received; got: ${this.spans.map((s) => s.span.name).join(", ")}`);
      await sleep(100);
    }
  }

  childrenOf(parent: OtlpSpan): OtlpSpan[] {
    return this.spans.map((s) => s.span).filter((s) => s.parentSpanId.equals(parent.spanId) && s.traceId.equals(parent.traceId));
  }

  close(): void {
    this.server.forceShutdown();
  }
}

function hex(n: number): string {
  return Array.from({ length: n }, (_, i) => ((i * 7 + 3) % 16).toString(16)).join("");
}

function unary<T>(fn: (cb: (err: grpc.ServiceError | null, res: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

describe("distributed tracing (--experimental-enable-distributed-tracing)", () => {
  const receiver = new OtlpReceiver();
  let member: Member;
  let kv: KVClient;

  beforeAll(async () => {
    const port = await receiver.listen();
    member = await startMember({
      binary: etcdTsBinary(),
      extraArgs: [
        "--experimental-enable-distributed-tracing",
        `--experimental-distributed-tracing-address=127.0.0.1:${port}`,
        "--experimental-distributed-tracing-service-name=etcd-ts-test",
        "--experimental-distributed-tracing-instance-id=m1",
      ],
    });
    kv = new KVClient(`127.0.0.1:${member.clientPort}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    kv?.close();
    await member?.destroy();
    receiver.close();
  });

  it("continues the client's trace: a put's and a linearizable range's server spans with their stages", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const putParent = hex(16);
    const rangeParent = "00f067aa0ba902b7";
    const put = new grpc.Metadata();
    put.set("traceparent", `00-${traceId}-${putParent}-01`);
    await unary<PutResponse>((cb) => kv.put(PutRequest.fromPartial({ key: Buffer.from("traced"), value: Buffer.from("v") }), put, cb));
    const range = new grpc.Metadata();
    range.set("traceparent", `00-${traceId}-${rangeParent}-01`);
    const got = await unary<RangeResponse>((cb) => kv.range(RangeRequest.fromPartial({ key: Buffer.from("traced") }), range, cb));
    expect(Buffer.from(got.kvs[0]!.value).toString()).toBe("v");
    // A parent that is not sampled is followed: nothing is exported for this one.
    const unsampled = new grpc.Metadata();
    unsampled.set("traceparent", `00-${"1".repeat(32)}-${rangeParent}-00`);
    await unary<PutResponse>((cb) => kv.put(PutRequest.fromPartial({ key: Buffer.from("untraced"), value: Buffer.from("v") }), unsampled, cb));
    // Nor for one without a parent (sampling rate 0 per million, the default).
    await unary<PutResponse>((cb) => kv.put(PutRequest.fromPartial({ key: Buffer.from("untraced"), value: Buffer.from("w") }), cb));

    const putSpan = await receiver.waitFor((s) => s.name === "etcdserverpb.KV/Put" && s.parentSpanId.toString("hex") === putParent);
    expect(putSpan.traceId.toString("hex")).toBe(traceId);
    expect(putSpan.kind).toBe(SERVER_KIND);
    const rangeSpan = await receiver.waitFor((s) => s.name === "etcdserverpb.KV/Range");
    expect(rangeSpan.traceId.toString("hex")).toBe(traceId);
    expect(rangeSpan.parentSpanId.toString("hex")).toBe(rangeParent);

    // The stage spans come in the same or a later batch than their parent.
    await receiver.waitFor((s) => s.name === "apply" && s.parentSpanId.equals(putSpan.spanId));
    await receiver.waitFor((s) => s.name === "read index" && s.parentSpanId.equals(rangeSpan.spanId));
    const putStages = receiver.childrenOf(putSpan);
    expect(putStages.map((s) => s.name).sort()).toEqual(["apply", "propose", "wal fsync"]);
    // In order, inside the server span.
    const at = (name: string, which: "startTimeUnixNano" | "endTimeUnixNano"): bigint => BigInt(putStages.find((s) => s.name === name)![which]);
    expect(at("propose", "endTimeUnixNano")).toBeLessThanOrEqual(at("wal fsync", "startTimeUnixNano"));
    expect(at("wal fsync", "endTimeUnixNano")).toBeLessThanOrEqual(at("apply", "startTimeUnixNano"));
    expect(BigInt(putSpan.startTimeUnixNano)).toBeLessThanOrEqual(at("propose", "startTimeUnixNano"));
    expect(at("apply", "endTimeUnixNano")).toBeLessThanOrEqual(BigInt(putSpan.endTimeUnixNano));
    expect(putSpan.events.map((e) => e.name)).toContain("committed");
    expect(receiver.childrenOf(rangeSpan).map((s) => s.name)).toEqual(["read index"]);
    expect(putSpan.attributes.find((a) => a.key === "rpc.method")?.value.stringValue).toBe("Put");

    // The resource is etcd's: service.name and service.instance.id from the flags.
    const resource = receiver.spans.find((s) => s.span === putSpan)!.resource;
    expect(resource.get("service.name")).toBe("etcd-ts-test");
    expect(resource.get("service.instance.id")).toBe("m1");

    // Give a late batch its chance, then: only the two traced requests' spans were exported.
    await sleep(1500);
    const traces = new Set(receiver.spans.map((s) => s.span.traceId.toString("hex")));
    expect([...traces]).toEqual([traceId]);
    expect(receiver.spans.filter((s) => s.span.kind === SERVER_KIND)).toHaveLength(2);
  });

  it("the JSON gateway's calls follow the HTTP request's traceparent header", async () => {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const parent = "b7ad6b7169203331";
    const res = await fetch(`http://127.0.0.1:${member.clientPort}/v3/kv/put`, {
      method: "POST",
      headers: { traceparent: `00-${traceId}-${parent}-01`, "content-type": "application/json" },
      body: JSON.stringify({ key: Buffer.from("gw").toString("base64"), value: Buffer.from("v").toString("base64") }),
    });
    expect(res.status).toBe(200);
    const span = await receiver.waitFor((s) => s.name === "etcdserverpb.KV/Put" && s.traceId.toString("hex") === traceId);
    expect(span.parentSpanId.toString("hex")).toBe(parent);
    await receiver.waitFor((s) => s.name === "apply" && s.parentSpanId.equals(span.spanId));
  });
});

describe("tracing off costs nothing", () => {
  it("only rpc-tracing.ts imports OpenTelemetry, and nothing imports it statically (start-member loads it on demand)", () => {
    const src = path.join(here, "..", "..", "server", "src");
    const files = (fs.readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith(".ts")).map((f) => f.split(path.sep).join("/"));
    const otel = files.filter((f) => /from "@opentelemetry\//.test(fs.readFileSync(path.join(src, f), "utf8")));
    expect(otel).toEqual(["api/v3rpc/rpc-tracing.ts"]);
    const importers = files.filter((f) => /rpc-tracing\.js/.test(fs.readFileSync(path.join(src, f), "utf8")));
    expect(importers).toEqual(["etcdmain/start-member.ts"]);
    const startMember = fs.readFileSync(path.join(src, "etcdmain/start-member.ts"), "utf8");
    expect(startMember).not.toMatch(/^import[^;]*rpc-tracing/m);
    expect(startMember).toMatch(/await import\("..\/api\/v3rpc\/rpc-tracing.js"\)/);
  });
});

describe("the tracing flags (etcd 3.5's)", () => {
  const resolve = (...args: string[]) => resolveConfig(args, {});
  it("default to etcd's values and are off unless enabled", () => {
    const off = resolve();
    expect(off.kind === "run" && off.config.tracing).toBeUndefined();
    const on = resolve("--experimental-enable-distributed-tracing");
    expect(on.kind === "run" && on.config.tracing).toEqual({ address: "localhost:4317", serviceName: "etcd", instanceId: "", samplingRatePerMillion: 0 });
  });
  it("check the sampling rate only when tracing is on, with etcd 3.5's texts", () => {
    expect(resolve("--experimental-distributed-tracing-sampling-rate=-5").kind).toBe("run");
    expect(() => resolve("--experimental-enable-distributed-tracing", "--experimental-distributed-tracing-sampling-rate=-5")).toThrow(
      new ConfigError("error verifying flags, distributed tracing configurition is not valid: (tracing sampling rate must be positive). See 'etcd --help'."),
    );
    expect(() => resolve("--experimental-enable-distributed-tracing", "--experimental-distributed-tracing-sampling-rate=1000001")).toThrow(
      "distributed tracing configurition is not valid: (tracing sampling rate must be less than 1000000)",
    );
    expect(() => resolve("--experimental-distributed-tracing-sampling-rate=0.5")).toThrow(FlagError);
  });
});
