/**
 * A tiny gRPC unary echo over pkg/h2 and the same over node:http2, plus a grpc-js client for
 * it (raw bytes, no protobuf), shared by the gRPC test and the micro-benchmark.
 */
import * as grpc from "@grpc/grpc-js";
import * as http2 from "node:http2";
import * as net from "node:net";
import { H2Connection, type H2Stream } from "../../../src/pkg/h2/h2-connection.js";
import { encodeHeaderBlock } from "../../../src/pkg/h2/hpack.js";

const RESPONSE = encodeHeaderBlock([":status", "200", "content-type", "application/grpc"]);
const OK_TRAILERS = encodeHeaderBlock(["grpc-status", "0"]);
const NOT_FOUND = encodeHeaderBlock([":status", "200", "content-type", "application/grpc", "grpc-status", "5", "grpc-message", "no such thing"]);

/** The echo's handler on a pkg/h2 stream: the request's message frame goes back as is. */
export function grpcEchoStream(stream: H2Stream): void {
  if (stream.header(":path") === "/test.Echo/Chat") return grpcChatStream(stream);
  if (stream.header(":path") !== "/test.Echo/Echo") {
    stream.respond(NOT_FOUND, true); // trailers-only
    return;
  }
  let first: Buffer | undefined;
  let more: Buffer[] | undefined;
  stream.onData = (c) => {
    if (first === undefined) first = c;
    else (more ??= [first]).push(c);
  };
  stream.onEnd = () => {
    stream.respond(RESPONSE);
    const body = more !== undefined ? Buffer.concat(more) : first;
    if (body !== undefined) stream.write(body);
    stream.end(OK_TRAILERS);
  };
}

/** Closed bidi streams' codes, for tests. */
export const chatClosed: number[] = [];

/**
 * A bidi stream that echoes the request's bytes as they come (gRPC's framing is a byte stream,
 * so the messages come back as sent), honouring write's backpressure with pause/resume.
 */
function grpcChatStream(stream: H2Stream): void {
  stream.respond(RESPONSE);
  stream.onData = (c) => {
    if (!stream.write(Buffer.from(c))) {
      stream.pause();
      stream.onDrain = () => stream.resume();
    }
  };
  stream.onEnd = () => stream.end(OK_TRAILERS);
  stream.onClose = (code) => chatClosed.push(code);
}

export async function listenOurs(port = 0): Promise<net.Server> {
  const server = net.createServer((socket) => {
    new H2Connection({}, { socket, handlers: { onStream: grpcEchoStream } });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}

const NODE_RESPONSE = { ":status": 200, "content-type": "application/grpc" };
const NODE_TRAILERS = { "grpc-status": "0" };

/** The same echo on node:http2, written the way the lean paths use it. */
export async function listenNode(port = 0): Promise<http2.Http2Server> {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    if (headers[":path"] !== "/test.Echo/Echo") {
      stream.respond({ ...NODE_RESPONSE, "grpc-status": "5", "grpc-message": "no such thing" }, { endStream: true });
      return;
    }
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", () => {});
    stream.once("end", () => {
      stream.respond(NODE_RESPONSE, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers(NODE_TRAILERS));
      stream.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}

const identity = (b: Buffer): Buffer => b;
export const EchoClient = grpc.makeGenericClientConstructor(
  {
    Echo: {
      path: "/test.Echo/Echo",
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
    Chat: {
      path: "/test.Echo/Chat",
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
    Missing: {
      path: "/test.Echo/Missing",
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  "Echo",
);

export type EchoClientInstance = grpc.Client & {
  Echo(req: Buffer, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientUnaryCall;
  Missing(req: Buffer, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientUnaryCall;
  Chat(): grpc.ClientDuplexStream<Buffer, Buffer>;
};

export function echoClient(port: number): EchoClientInstance {
  return new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as EchoClientInstance;
}

export function call(client: EchoClientInstance, method: "Echo" | "Missing", req: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => client[method](req, (err, res) => (err ? reject(err) : resolve(res!))));
}
