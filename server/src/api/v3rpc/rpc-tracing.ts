/**
 * Distributed tracing of client requests with OpenTelemetry, under etcd 3.5's flags
 * (--experimental-enable-distributed-tracing and friends). Loaded only when the flag is on
 * (etcdmain imports this module dynamically), so that a member with tracing off never loads the
 * SDK; the member then sees no RequestTrace and the service registry no wrapper.
 *
 * What is traced: every unary gRPC call (and the gateway's calls of the same handlers) gets a
 * server span named after its method (`etcdserverpb.KV/Put`), a child of the W3C `traceparent`
 * the client sent in its metadata (baggage is read too). A sampled request's stages are child
 * spans:
 *   read index  a linearizable range or read-only txn waiting for its ReadIndex round and for
 *               apply to reach it
 *   propose     the entry handed to raft, until the driver takes it into a Ready
 *   wal fsync   that Ready's WAL write and fsync
 *   apply       from the Ready that committed the entry (event "committed") to the answer
 * A follower's proposal travels to the leader and back as other bytes: there only "propose" is
 * seen, closed at the answer. Streaming calls (Watch, keep-alives, Snapshot) are not traced.
 *
 * Sampling as etcd 3.5: parent-based (a sampled parent is always followed, an unsampled one
 * never); a request without a parent is sampled at `samplingRatePerMillion` / 1,000,000 by
 * trace ID, never at 0 (the default). Spans leave in batches by OTLP over gRPC (insecure) to
 * `address`, with the resource attributes service.name and, when set, service.instance.id.
 */
import type { handleUnaryCall, Metadata, sendUnaryData, ServerUnaryCall, ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type TextMapGetter, type Tracer } from "@opentelemetry/api";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { AlwaysOffSampler, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base";
import { NodeSDK } from "@opentelemetry/sdk-node";
import type { Ready } from "../../raft/types.js";
import type { ReadyObserver } from "../../server/raft-node.js";
import type { RequestTrace } from "../../server/request-trace.js";
import type { Logger } from "../../pkg/logger.js";
import { CALL_TRACE, type TraceableCall } from "./grpc-util.js";
import type { ServiceWrapper } from "./service-registry.js";

export interface RpcTracingOptions {
  /** host:port of the OTLP/gRPC receiver (etcd's default localhost:4317). */
  address: string;
  /** The resource's service.name (etcd's default "etcd"). */
  serviceName: string;
  /** The resource's service.instance.id; "" leaves it out. */
  instanceId: string;
  /** Root requests sampled per million (0: none; a sampled parent is always followed). */
  samplingRatePerMillion: number;
}

/** The tracer's instruments, for etcdmain to hand to the registry and the member. */
export interface RpcTracing {
  /** The registry's wrapper: unary handlers get their server span and RequestTrace. */
  readonly wrapService: ServiceWrapper;
  /** The member's ReadyObserver: sees traced entries reach the WAL and commit. */
  readonly observer: ReadyObserver;
  /** Exports what is buffered and stops. Never throws. */
  shutdown(): Promise<void>;
}

const SAMPLES_PER_RATE = 1_000_000;

/**
 * Now, in epoch milliseconds from the monotonic clock. Every time a span gets is given
 * explicitly from here, so that the stages of one request order exactly (spans that read the
 * clock themselves each anchor it anew, microseconds apart).
 */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => {
    const values = md.get(key);
    if (values.length === 0) return undefined;
    return values.map(String);
  },
};

/** Starts the SDK and returns the instruments. @throws when the SDK refuses the configuration. */
export function startRpcTracing(options: RpcTracingOptions, deps: { logger: Logger }): RpcTracing {
  const root = options.samplingRatePerMillion <= 0 ? new AlwaysOffSampler() : new TraceIdRatioBasedSampler(options.samplingRatePerMillion / SAMPLES_PER_RATE);
  const exporter = new OTLPTraceExporter({ url: `http://${options.address}` });
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      "service.name": options.serviceName,
      ...(options.instanceId !== "" ? { "service.instance.id": options.instanceId } : {}),
    }),
    autoDetectResources: false,
    sampler: new ParentBasedSampler({ root }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1000 })],
    textMapPropagator: new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
    instrumentations: [],
    logRecordProcessors: [],
    metricReaders: [],
  });
  sdk.start();
  const tracer = trace.getTracer("etcd-ts");
  const entries = new EntryTraces();
  // etcd logs this at debug level.
  deps.logger.debug("distributed tracing enabled", {
    address: options.address,
    "service-name": options.serviceName,
    "service-instance-id": options.instanceId,
    "sampling-rate": options.samplingRatePerMillion,
  });
  return {
    wrapService: (definition, implementation) => traceService(definition, implementation, tracer, entries),
    observer: entries,
    shutdown: () => sdk.shutdown().catch((err: unknown) => deps.logger.warn("failed to flush traces", { error: String(err) })),
  };
}

/** Wraps the unary methods of one service; streaming methods pass through untouched. */
function traceService(definition: ServiceDefinition, implementation: UntypedServiceImplementation, tracer: Tracer, entries: EntryTraces): UntypedServiceImplementation {
  const traced: UntypedServiceImplementation = { ...implementation };
  for (const [name, method] of Object.entries(definition)) {
    if (method.requestStream || method.responseStream) continue;
    const handler = implementation[name] as handleUnaryCall<unknown, unknown>;
    const spanName = method.path.replace(/^\//, "");
    const [service = "", rpc = ""] = spanName.split("/");
    traced[name] = ((call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const parent: Context = propagation.extract(ROOT_CONTEXT, call.metadata, metadataGetter);
      const span = tracer.startSpan(
        spanName,
        { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc }, startTime: nowMs() },
        parent,
      );
      if (!span.isRecording()) {
        span.end();
        handler(call, callback);
        return;
      }
      const requestTrace = new SpanRequestTrace(span, tracer, entries);
      (call as TraceableCall)[CALL_TRACE] = requestTrace;
      handler(call, ((err, value, trailer, flags) => {
        const code = err?.code ?? 0;
        span.setAttribute("rpc.grpc.status_code", code);
        if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: err?.details ?? "" });
        requestTrace.finish();
        callback(err, value, trailer, flags);
      }) as sendUnaryData<unknown>);
    }) as never;
  }
  return traced;
}

/** One traced request: its server span and the stage spans open under it. */
class SpanRequestTrace implements RequestTrace {
  private readonly ctx: Context;
  private propose: Span | undefined;
  private fsync: Span | undefined;
  private apply: Span | undefined;

  constructor(private readonly span: Span, private readonly tracer: Tracer, private readonly entries: EntryTraces) {
    this.ctx = trace.setSpan(ROOT_CONTEXT, span);
  }

  proposing(data: Uint8Array): void {
    this.propose = this.child("propose", nowMs());
    this.entries.track(data, this);
  }

  stage<T>(name: string, work: Promise<T>): Promise<T> {
    const span = this.child(name, nowMs());
    work.then(
      () => span.end(nowMs()),
      (err: unknown) => {
        span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
        span.end(nowMs());
      },
    );
    return work;
  }

  /** The driver took the entry into a Ready at `atMs` (nowMs()): its WAL write begins. */
  taken(atMs: number): void {
    this.propose?.end(atMs);
    this.propose = undefined;
    this.fsync ??= this.child("wal fsync", atMs);
  }

  /** The Ready holding the entry is durable. */
  persisted(atMs: number): void {
    this.fsync?.end(atMs);
  }

  /** The entry is committed and goes to the apply path now. */
  committed(atMs: number): void {
    this.span.addEvent("committed", atMs);
    this.apply ??= this.child("apply", atMs);
  }

  /** The answer is ready: every open stage ends, then the server span. */
  finish(): void {
    const at = nowMs();
    this.propose?.end(at);
    this.apply?.end(at);
    this.span.end(at);
  }

  private child(name: string, startTime: number): Span {
    return this.tracer.startSpan(name, { kind: SpanKind.INTERNAL, startTime }, this.ctx);
  }
}

/**
 * The traced entries by their bytes (held weakly: an entry forgotten by raft and the apply path
 * is forgotten here), and the member's ReadyObserver that reports their stages.
 */
class EntryTraces implements ReadyObserver {
  private readonly byData = new WeakMap<Uint8Array, SpanRequestTrace>();

  track(data: Uint8Array, t: SpanRequestTrace): void {
    this.byData.set(data, t);
  }

  taken(rd: Ready): void {
    const at = nowMs();
    for (const e of rd.entries) this.byData.get(e.data)?.taken(at);
  }

  persisted(rd: Ready): void {
    const at = nowMs();
    for (const e of rd.entries) this.byData.get(e.data)?.persisted(at);
    for (const e of rd.committedEntries) this.byData.get(e.data)?.committed(at);
  }
}
