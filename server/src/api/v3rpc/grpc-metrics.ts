/**
 * Server-side gRPC metrics in go-grpc-prometheus' terms (the grpc_server_* families etcd
 * exports): per method, calls started, calls handled by status code, messages received and sent,
 * and (with --metrics extensive) the handling-time histogram. Every served method has its cells
 * from the start, as etcd pre-initialises them.
 *
 * The hook is one wrapper per method (`instrument`, applied by the service registry), bound to
 * that method's cells once. Per call it touches numbers only: a unary call's cells are handed to
 * the unary adapter as it starts (`takeUnaryCells`), which keeps them in the closures it makes
 * anyway and records the end; a stream's end and messages are counted by listeners shared by
 * all streams, reading the cells the wrapper tagged the stream with. No label objects, no
 * closures, no added properties per unary call.
 *
 * It also totals the client connections' bytes (etcd_network_client_grpc_{sent,received}_bytes_total):
 * the listener hands every gRPC connection to `trackConnection`, and the totals are read from the
 * sockets when scraped (etcd counts message payloads; here it is the bytes on the connection).
 */
import type { Duplex } from "node:stream";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { HistogramCell } from "../../pkg/metric-cells.js";

/** gRPC's status code names, by code (go-grpc's codes.Code String()). */
export const GRPC_CODE_NAMES = [
  "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists", "PermissionDenied",
  "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
  "Unauthenticated",
] as const;

/** Prometheus' default buckets, which go-grpc-prometheus' handling histogram uses. */
export const GRPC_HANDLING_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

/** One method's counters. */
export class MethodCells {
  started = 0;
  received = 0;
  sent = 0;
  /** Calls handled, by status code (index = code). */
  readonly handled = new Float64Array(GRPC_CODE_NAMES.length);
  /** Handling seconds; only with --metrics extensive. */
  readonly handling: HistogramCell | undefined;

  constructor(readonly type: GrpcType, readonly service: string, readonly method: string, extensive: boolean) {
    this.handling = extensive ? new HistogramCell(GRPC_HANDLING_BUCKETS) : undefined;
  }

  /** When a call starts: now, when handling times are kept (0 otherwise). */
  startTime(): number {
    return this.handling !== undefined ? performance.now() : 0;
  }

  done(code: number, startedAt: number): void {
    this.handled[code >= 0 && code < GRPC_CODE_NAMES.length ? code : 2]!++;
    if (this.handling !== undefined) this.handling.observe((performance.now() - startedAt) / 1000);
  }

  /** A unary call ended with status `code` (0 OK: its one message was sent). */
  finishUnary(code: number, startedAt: number): void {
    if (code === 0) this.sent++;
    this.done(code, startedAt);
  }
}

const CELLS = Symbol("grpcMetricCells");
const STARTED_AT = Symbol("grpcMetricStartedAt");
const WRITE = Symbol("grpcMetricWrite");

/** What the wrapper puts on a call. */
interface Tagged {
  metadata?: { get(key: string): unknown[] };
  [CELLS]?: MethodCells;
  [STARTED_AT]?: number;
  [WRITE]?: (...args: unknown[]) => boolean;
  pendingStatus?: { code?: number };
  write?: (...args: unknown[]) => boolean;
  on?(event: string, fn: (...args: any[]) => void): unknown;
  once?(event: string, fn: (...args: any[]) => void): unknown;
}

/** The cells of the unary call being started (set by the wrapper around the adapter's entry). */
let unarySlot: MethodCells | undefined;

/**
 * The cells of the unary call starting now, for its adapter (grpc-util.ts `unary`) to keep in
 * the closures it makes anyway and to `finish` when the call ends; undefined for a call the
 * registry did not instrument. Must be called synchronously at the adapter's entry.
 */
export function takeUnaryCells(): MethodCells | undefined {
  const cells = unarySlot;
  unarySlot = undefined;
  return cells;
}

function onStreamData(this: Tagged): void {
  const cells = this[CELLS];
  if (cells !== undefined) cells.received++;
}

function countedWrite(this: Tagged, ...args: unknown[]): boolean {
  const cells = this[CELLS];
  if (cells !== undefined) cells.sent++;
  return this[WRITE]!.apply(this, args);
}

function onStreamFinish(this: Tagged): void {
  const cells = this[CELLS];
  if (cells === undefined) return;
  this[CELLS] = undefined;
  cells.done(this.pendingStatus?.code ?? 0, this[STARTED_AT]!);
}

function onStreamCancelled(this: Tagged): void {
  const cells = this[CELLS];
  if (cells === undefined) return;
  // The handler sees its context cancelled and returns codes.Canceled (etcd's streams do).
  this[CELLS] = undefined;
  cells.done(1, this[STARTED_AT]!);
}

/** A socket's own byte counts (net.Socket, tls.TLSSocket). */
type Counted = Duplex & { bytesRead: number; bytesWritten: number };

type AnyHandler = (call: any, callback?: (err: unknown, value?: unknown) => void) => void;

/** Calls by the client API version they name (etcd_server_client_requests_total). */
class ClientVersionCounts {
  unary = 0;
  stream = 0;
}

export class GrpcMetrics {
  /** Every instrumented method, in registration order. */
  readonly methods: MethodCells[] = [];
  private readonly byClientVersion = new Map<string, ClientVersionCounts>();
  private readonly sockets = new Set<Counted>();
  private closedReceived = 0;
  private closedSent = 0;

  constructor(readonly options: { extensive: boolean }) {}

  /**
   * The counts for the client API version a call names in its `client-api-version` metadata
   * ("unknown" without); the metadata's own array is read, nothing is copied.
   */
  private clientVersion(call: Tagged): ClientVersionCounts {
    const v = call.metadata?.get("client-api-version")[0];
    const key = typeof v === "string" ? v : "unknown";
    let c = this.byClientVersion.get(key);
    if (c === undefined) {
      // Bounded: a client can name any version, so only the first 64 get their own series.
      if (this.byClientVersion.size >= 64) return this.clientVersionOverflow;
      c = new ClientVersionCounts();
      this.byClientVersion.set(key, c);
    }
    return c;
  }

  private readonly clientVersionOverflow = new ClientVersionCounts();

  /** etcd_server_client_requests_total's series: [type, client_api_version] and the count. */
  clientRequests(): Array<readonly [readonly string[], number]> {
    const out: Array<readonly [readonly string[], number]> = [];
    for (const [version, c] of this.byClientVersion) {
      if (c.stream > 0) out.push([["stream", version], c.stream]);
      if (c.unary > 0) out.push([["unary", version], c.unary]);
    }
    return out;
  }

  /** `implementation` with every method of `definition` counted (see the file comment). */
  instrument<I extends UntypedServiceImplementation>(definition: ServiceDefinition<I>, implementation: I): I {
    const out: UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(definition)) {
      const handler = implementation[name] as unknown as AnyHandler;
      const [service, rpc] = method.path.replace(/^\//, "").split("/") as [string, string];
      const type: GrpcType =
        method.requestStream && method.responseStream ? "bidi_stream"
        : method.requestStream ? "client_stream"
        : method.responseStream ? "server_stream"
        : "unary";
      const cells = new MethodCells(type, service, rpc, this.options.extensive);
      this.methods.push(cells);
      if (type === "unary") {
        out[name] = ((call: Tagged, callback: (err: unknown, value?: unknown) => void) => {
          cells.started++;
          cells.received++;
          this.clientVersion(call).unary++;
          unarySlot = cells;
          try {
            handler(call, callback);
          } finally {
            unarySlot = undefined;
          }
        }) as never;
      } else {
        out[name] = ((call: Tagged) => {
          cells.started++;
          this.clientVersion(call).stream++;
          call[CELLS] = cells;
          call[STARTED_AT] = cells.handling !== undefined ? performance.now() : 0;
          if (type === "server_stream") cells.received++;
          else call.on?.("data", onStreamData);
          if (typeof call.write === "function") {
            call[WRITE] = call.write;
            call.write = countedWrite;
          }
          call.once?.("finish", onStreamFinish);
          call.once?.("cancelled", onStreamCancelled);
          handler(call);
        }) as never;
      }
    }
    return out as I;
  }

  /**
   * Counts a client connection's bytes (received and sent) until it closes: `socket` is the
   * client's socket (net or TLS); a stream without byte counts is not counted.
   */
  trackConnection(stream: Duplex): void {
    const socket = stream as Counted;
    if (typeof socket.bytesRead !== "number") return;
    this.sockets.add(socket);
    socket.once("close", () => {
      this.closedReceived += socket.bytesRead;
      this.closedSent += socket.bytesWritten;
      this.sockets.delete(socket);
    });
  }

  /** Bytes received from and sent to gRPC clients so far. */
  clientBytes(): { received: number; sent: number } {
    let received = this.closedReceived;
    let sent = this.closedSent;
    for (const s of this.sockets) {
      received += s.bytesRead;
      sent += s.bytesWritten;
    }
    return { received, sent };
  }
}
