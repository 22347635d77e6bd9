/**
 * etcd 3.4's HTTP/JSON gateway (grpc-gateway) on the client port: POST /v3/<service>/<method>
 * (and the same under /v3beta) runs the gRPC method with the JSON body as its request and answers
 * with the response as JSON (see json-mapping.ts for the mapping).
 *
 * The routes come from the service registry (routes.ts): each calls the very handler the gRPC
 * server runs, through an in-process call object, so validation, errors and results are the gRPC
 * ones.
 *
 * Responses, as grpc-gateway writes them:
 *   - unary: 200 and the message; on error the HTTP status for the gRPC code (httpStatusOf) and
 *     {"error": msg, "message": msg, "code": n};
 *   - streams (watch, lease keepalive, snapshot): 200, chunked, one {"result": message} line
 *     per response. Watch and keepalive read their requests from the body as they arrive (one
 *     JSON request after another); the first not decoding gets 500 with code 2 (as etcd), a later
 *     one ends the reading. The end of the body is the client's half-close: keepalive then ends;
 *     a watch stays open (etcd keeps the watchers of a half-closed stream) until the client goes.
 *     Snapshot takes one request. A failing stream ends with one
 *     {"error": {grpc_code, http_code, message, http_status}} chunk (with the code's HTTP status
 *     when nothing was sent before it).
 *   - a path under /v3/ or /v3beta/ that names no method: 404 "Not Found"; a method other than
 *     POST (OPTIONS excepted, which gets the CORS headers): 405 "Method Not Allowed"; "/v3"
 *     itself: 301 to "/v3/" (Go's ServeMux).
 *
 * Bounds: each decoded request is held to gRPC's receive limit (`messageBytesMax`, measured on its
 * protobuf encoding, failing with ResourceExhausted and grpc-go's text as etcd's gateway does);
 * a unary body, and the undecoded rest of a stream body, are held to `bodyBytesMax` (room for
 * base64 and JSON around such a message; beyond it the same error, counting body bytes). The
 * handlers' own back-pressure (pause/resume) pauses reading the body. A stream lives as long as
 * its HTTP connection (as in etcd).
 */
import { EventEmitter } from "node:events";
import { StringDecoder } from "node:string_decoder";
import type http from "node:http";
import { Metadata, status as Status } from "@grpc/grpc-js";
import { statusOf } from "../v3rpc/errors.js";
import { goHttpError } from "../../pkg/go-http-error.js";
import type { ServiceRegistry } from "../v3rpc/service-registry.js";
import { GATEWAY_SCHEMA } from "./schema.js";
import { GatewayCodec, GatewayInputError, JsonReader, type JsonValue } from "./json-mapping.js";
import { gatewayRoutes, type Route } from "./routes.js";

/** grpc-gateway (v1, as vendored by etcd 3.4): HTTP status for a gRPC status code. */
export function httpStatusOf(code: number): number {
  switch (code) {
    case Status.OK: return 200;
    case Status.CANCELLED: return 408;
    case Status.UNKNOWN: return 500;
    case Status.INVALID_ARGUMENT: return 400;
    case Status.DEADLINE_EXCEEDED: return 504;
    case Status.NOT_FOUND: return 404;
    case Status.ALREADY_EXISTS: return 409;
    case Status.PERMISSION_DENIED: return 403;
    case Status.UNAUTHENTICATED: return 401;
    case Status.RESOURCE_EXHAUSTED: return 429;
    case Status.FAILED_PRECONDITION: return 412;
    case Status.ABORTED: return 409;
    case Status.OUT_OF_RANGE: return 400;
    case Status.UNIMPLEMENTED: return 501;
    case Status.INTERNAL: return 500;
    case Status.UNAVAILABLE: return 503;
    case Status.DATA_LOSS: return 500;
    default: return 500;
  }
}

/** The unary error body grpc-gateway writes. */
export function errorBody(code: number, message: string): string {
  return JSON.stringify({ error: message, message, code });
}

/**
 * The chunk grpc-gateway writes when a stream fails (last in the body, no line break after it);
 * if nothing was sent yet, the HTTP status is the code's.
 */
export function streamErrorChunk(code: number, message: string): string {
  const httpCode = httpStatusOf(code);
  return JSON.stringify({ error: { grpc_code: code, http_code: httpCode, message, http_status: httpStatusText(httpCode) } });
}

const STATUS_TEXT: Record<number, string> = {
  200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
  409: "Conflict", 412: "Precondition Failed", 429: "Too Many Requests", 500: "Internal Server Error",
  501: "Not Implemented", 503: "Service Unavailable", 504: "Gateway Timeout",
};

function httpStatusText(code: number): string {
  return STATUS_TEXT[code] ?? "";
}

/** The path prefixes etcd 3.4 serves the gateway under. */
const PREFIXES = ["/v3/", "/v3beta/"];

export interface GatewayOptions {
  /** gRPC's receive limit: largest protobuf-encoded request (bytes). */
  messageBytesMax: number;
  /** Largest request body read (bytes); larger bodies fail with ResourceExhausted. */
  bodyBytesMax: number;
}

/** etcd's gRPC receive limit: --max-request-bytes plus 512 KiB for the rest of the message. */
export function gatewayMessageBytesMax(maxRequestBytes: number): number {
  return maxRequestBytes + 512 * 1024;
}

/** Body bytes read for a message limit: room for base64 (4/3), escapes and JSON framing. */
export function gatewayBodyBytesMax(messageBytesMax: number): number {
  return 2 * messageBytesMax + 64 * 1024;
}

/** grpc-go's text for a message over the receive limit. */
function tooLargeMessage(bytes: number, max: number): string {
  return `grpc: received message larger than max (${bytes} vs. ${max})`;
}

class MessageTooLarge extends Error {}

export class Gateway {
  private readonly codec = new GatewayCodec(GATEWAY_SCHEMA);
  private readonly routes: Map<string, Route>;
  /** Gateway paths of methods not served, with their gRPC method paths. */
  private readonly unserved: Map<string, string>;

  constructor(private readonly options: GatewayOptions, services: ServiceRegistry) {
    const routes = gatewayRoutes(services);
    this.routes = routes.served;
    this.unserved = routes.unserved;
    for (const r of this.routes.values()) {
      // A route naming a message the schema lacks is a programming error: fail at start-up.
      this.codec.empty(r.request);
      this.codec.empty(r.response);
    }
  }

  /** Whether `pathname` belongs to the gateway (so the caller hands the request to handle()). */
  owns(pathname: string): boolean {
    return pathname === "/v3" || PREFIXES.some((p) => pathname.startsWith(p));
  }

  /** Serves one HTTP request whose path the gateway owns. Never throws. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): void {
    // CORS and OPTIONS are the client port's access controller's (http/http-handler.ts).
    if (pathname === "/v3") return redirectToSubtree(req, res, "/v3/");
    const prefix = PREFIXES.find((p) => pathname.startsWith(p))!;
    const route = this.routes.get(pathname.slice(prefix.length));
    const unserved = this.unserved.get(pathname.slice(prefix.length));
    if (route === undefined && unserved === undefined) {
      goHttpError(res, 404, "Not Found");
      return;
    }
    if (req.method !== "POST") {
      goHttpError(res, 405, "Method Not Allowed");
      return;
    }
    if (route === undefined) return this.unimplemented(unserved!, req, res);
    if (route.kind === "bidi") return this.bidi(route, req, res);
    readBody(req, this.options.bodyBytesMax).then(
      (body) => {
        if (body === undefined) {
          const bytes = Number(req.headers["content-length"] ?? this.options.bodyBytesMax + 1);
          return jsonError(res, Status.RESOURCE_EXHAUSTED, tooLargeMessage(bytes, this.options.messageBytesMax));
        }
        if (route.kind === "unary") return this.unary(route, body, req, res);
        return this.serverStream(route, body, req, res);
      },
      () => res.destroy(),
    );
  }

  /** A method the gRPC port does not serve: its answer, once the body is read as JSON. */
  private unimplemented(grpcPath: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    readBody(req, this.options.bodyBytesMax).then(
      (body) => {
        try {
          if (body !== undefined) new JsonReader(body).next();
        } catch (err) {
          return jsonError(res, Status.INVALID_ARGUMENT, (err as Error).message);
        }
        jsonError(res, Status.UNIMPLEMENTED, `The server does not implement the method ${grpcPath}`);
      },
      () => res.destroy(),
    );
  }

  /**
   * The one request in a body (an empty body is the empty request), checked against gRPC's size
   * limit. @throws GatewayInputError for bad JSON, MessageTooLarge over the limit.
   */
  private decodeBody(route: Route, body: string): Record<string, unknown> {
    const v = new JsonReader(body).next();
    const request = v === undefined ? this.codec.empty(route.request) : this.codec.decode(route.request, v);
    this.checkSize(route, request);
    return request;
  }

  /** Throws MessageTooLarge when `request` is over gRPC's receive limit. */
  private checkSize(route: Route, request: unknown): void {
    const bytes = route.method.requestSerialize(request).length;
    if (bytes > this.options.messageBytesMax) throw new MessageTooLarge(tooLargeMessage(bytes, this.options.messageBytesMax));
  }

  private unary(route: Route, body: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    let request: Record<string, unknown>;
    try {
      request = this.decodeBody(route, body);
    } catch (err) {
      if (err instanceof GatewayInputError) return jsonError(res, Status.INVALID_ARGUMENT, err.message);
      if (err instanceof MessageTooLarge) return jsonError(res, Status.RESOURCE_EXHAUSTED, err.message);
      return jsonError(res, Status.UNKNOWN, String(err));
    }
    const call = new GatewayCall(request, req);
    res.on("close", () => call.cancel());
    const callback = (err: unknown, value?: unknown): void => {
      if (res.writableEnded || res.destroyed) return;
      if (err) {
        // An answer from the method (not from decoding) carries the gRPC trailer, as in etcd.
        const [code, message] = statusOf(err);
        res.setHeader("Trailer", "Grpc-Trailer-Content-Type");
        res.addTrailers({ "Grpc-Trailer-Content-Type": "application/grpc" });
        return jsonError(res, code, message);
      }
      let text: string;
      try {
        text = this.codec.encode(route.response, value);
      } catch (encodeErr) {
        return jsonError(res, Status.INTERNAL, `gateway: cannot encode ${route.response}: ${String(encodeErr)}`);
      }
      res.statusCode = 200;
      res.setHeader("Content-Type", "application/json");
      res.setHeader("Grpc-Metadata-Content-Type", "application/grpc");
      res.end(text);
    };
    (route.handler as (call: unknown, cb: typeof callback) => void)(call, callback);
  }

  /**
   * A server-streaming method (snapshot): one request from the whole body (decoded as a unary
   * request is, so a bad body is InvalidArgument), then one result line per response.
   */
  private serverStream(route: Route, body: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    let request: Record<string, unknown>;
    try {
      request = this.decodeBody(route, body);
    } catch (err) {
      if (err instanceof MessageTooLarge) return jsonError(res, Status.RESOURCE_EXHAUSTED, err.message);
      return jsonError(res, Status.INVALID_ARGUMENT, (err as Error).message);
    }
    this.openStream(route, request, req, res);
  }

  /**
   * A bidirectional method (watch, keepalive): requests are decoded from the body as they arrive
   * and handed to the handler one by one while its responses stream back. The first request
   * failing to decode is an error answer (500, code 2, as etcd's gateway); a later one ends the
   * reading. The end of the body is the client's half-close: keepalive then finishes; a watch
   * stays open (etcd keeps the watchers of a half-closed stream) until the client goes.
   */
  private bidi(route: Route, req: http.IncomingMessage, res: http.ServerResponse): void {
    const decoder = new StringDecoder("utf8");
    const halfCloseEnds = route.request !== "etcdserverpb.WatchRequest";
    let pending = "";
    let call: GatewayCall | undefined;
    let reading = true;
    let ended = false;

    const open = (first: Record<string, unknown>): GatewayCall => {
      call ??= this.openStream(route, first, req, res);
      return call;
    };
    const stopReading = (err?: unknown): void => {
      reading = false;
      pending = "";
      if (call === undefined && err !== undefined) {
        const tooLarge = err instanceof MessageTooLarge;
        jsonError(res, tooLarge ? Status.RESOURCE_EXHAUSTED : Status.UNKNOWN, (err as Error).message);
        return;
      }
      const c = open(this.codec.empty(route.request));
      if (halfCloseEnds) c.emit("end");
    };
    const consume = (): void => {
      // Each pass takes one complete request off the front of `pending`; bounded by its length.
      while (reading) {
        if (pending.length > this.options.bodyBytesMax) {
          stopReading(new MessageTooLarge(tooLargeMessage(Buffer.byteLength(pending), this.options.messageBytesMax)));
          return;
        }
        const reader = new JsonReader(pending);
        let v: JsonValue | undefined;
        try {
          v = reader.next();
        } catch (err) {
          if (err instanceof GatewayInputError && err.message === "unexpected EOF" && !ended) return; // wait for more
          stopReading(err);
          return;
        }
        if (v === undefined) {
          pending = "";
          if (ended) stopReading();
          return;
        }
        pending = pending.slice(reader.offset);
        let request: Record<string, unknown>;
        try {
          request = this.codec.decode(route.request, v);
          this.checkSize(route, request);
        } catch (err) {
          stopReading(err);
          return;
        }
        open(request).emit("data", request);
      }
    };
    req.on("data", (chunk: Buffer) => {
      if (!reading) return;
      const text = decoder.write(chunk);
      pending += text;
      // A request is an object: nothing can complete before a '}' arrives.
      if (text.includes("}")) consume();
      else if (pending.length > this.options.bodyBytesMax) consume();
    });
    req.on("end", () => {
      ended = true;
      if (!reading) return;
      pending += decoder.end();
      consume();
    });
  }

  /** Starts the handler of a stream route on an in-process call writing to `res`. */
  private openStream(route: Route, request: Record<string, unknown>, req: http.IncomingMessage, res: http.ServerResponse): GatewayCall {
    const call = new GatewayCall(request, req);
    let started = false;
    const start = (): void => {
      if (started) return;
      started = true;
      res.statusCode = 200;
      res.setHeader("Content-Type", "application/json");
      res.setHeader("Grpc-Metadata-Content-Type", "application/grpc");
      res.setHeader("Transfer-Encoding", "chunked");
    };
    call.sink = {
      write: (msg) => {
        if (res.writableEnded || res.destroyed) return false;
        start();
        return res.write(JSON.stringify({ result: this.codec.toJson(route.response, msg) }) + "\n");
      },
      end: () => {
        if (res.writableEnded || res.destroyed) return;
        start();
        res.end();
      },
      fail: (err) => {
        if (res.writableEnded || res.destroyed) return;
        const [code, message] = statusOf(err);
        if (!started) {
          start();
          res.statusCode = httpStatusOf(code);
        }
        res.end(streamErrorChunk(code, message));
      },
    };
    res.on("drain", () => call.emit("drain"));
    res.on("close", () => call.cancel());
    (route.handler as (call: unknown) => void)(call);
    return call;
  }
}

/** What a stream call writes to: the HTTP response, framed as grpc-gateway frames it. */
interface StreamSink {
  write(msg: unknown): boolean;
  end(): void;
  fail(err: unknown): void;
}

/**
 * The in-process stand-in for a grpc-js call object (unary, server-streaming or duplex): the
 * request, metadata, cancellation, and write/end/error for streams.
 */
class GatewayCall extends EventEmitter {
  readonly metadata = new Metadata();
  cancelled = false;
  sink: StreamSink | undefined;

  constructor(readonly request: unknown, private readonly req: http.IncomingMessage) {
    super();
    // grpc-gateway's metadata: the Authorization header as `authorization`, and every
    // Grpc-Metadata-<Key> header as <key> (a -bin key's value base64-decoded), e.g.
    // Grpc-Metadata-Token or Grpc-Metadata-Hasleader.
    const auth = req.headers.authorization;
    if (auth !== undefined) this.metadata.set("authorization", auth);
    for (const [name, value] of Object.entries(req.headers)) {
      if (!name.startsWith("grpc-metadata-") || value === undefined || name.length === "grpc-metadata-".length) continue;
      const key = name.slice("grpc-metadata-".length);
      for (const v of Array.isArray(value) ? value : [value]) {
        if (key.endsWith("-bin")) this.metadata.add(key, Buffer.from(v, "base64"));
        else this.metadata.add(key, v);
      }
    }
    // The W3C trace context of the HTTP request, for the tracer (rpc-tracing.ts) when it is on.
    const traceparent = req.headers.traceparent;
    if (typeof traceparent === "string") this.metadata.set("traceparent", traceparent);
    // A handler reports a stream failure by emitting "error"; it goes to the client.
    this.on("error", (err: unknown) => this.sink?.fail(err));
  }

  getPeer(): string {
    return `${this.req.socket.remoteAddress ?? ""}:${this.req.socket.remotePort ?? 0}`;
  }
  getDeadline(): number {
    return Infinity;
  }
  getPath(): string {
    return this.req.url ?? "";
  }
  sendMetadata(): void {}
  /** Back-pressure from the handler: stop reading the request body for a while. */
  pause(): this {
    this.req.pause();
    return this;
  }
  resume(): this {
    this.req.resume();
    return this;
  }
  write(msg: unknown): boolean {
    return this.sink?.write(msg) ?? false;
  }
  end(): void {
    this.sink?.end();
  }
  /** The client went away: the handler sees grpc-js's cancellation events. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit("cancelled", "cancelled");
    this.emit("close");
  }
}

/** Go's ServeMux answer for a subtree root asked without its trailing slash. */
function redirectToSubtree(req: http.IncomingMessage, res: http.ServerResponse, target: string): void {
  const query = (req.url ?? "").indexOf("?");
  const location = query >= 0 ? target + (req.url ?? "").slice(query) : target;
  res.statusCode = 301;
  res.setHeader("Location", location);
  if (req.method === "GET" || req.method === "HEAD") {
    res.setHeader("Content-Type", "text/html; charset=utf-8");
    const escaped = location.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;" })[c]!);
    res.end(`<a href="${escaped}">Moved Permanently</a>.\n\n`);
    return;
  }
  res.end();
}


function jsonError(res: http.ServerResponse, code: number, message: string): void {
  if (res.writableEnded || res.destroyed) return;
  res.statusCode = httpStatusOf(code);
  res.setHeader("Content-Type", "application/json");
  res.end(errorBody(code, message));
}

/** The body as text, or undefined once it exceeds `bytesMax` (the rest is discarded). */
function readBody(req: http.IncomingMessage, bytesMax: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      if (over) return;
      bytes += chunk.length;
      if (bytes > bytesMax) {
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(over ? undefined : Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
