/**
 * Keeps a client's early reset from killing the process.
 *
 * node:http2 emits a server's 'stream' event a tick after it parsed the HEADERS. A client that
 * sends HEADERS and RST_STREAM together (a cancelled call, h2spec, a scanner) gets the stream
 * destroyed in between. grpc-js's stream handler then answers it anyway (`respond`, a 415 for a
 * request that is not gRPC), node throws ERR_HTTP2_INVALID_STREAM from inside an event emit,
 * and the uncaught exception ends the process. etcd answers nothing and goes on.
 *
 * The guard replaces the 'stream' listener of each of grpc-js's HTTP/2 servers (lean-path.ts's
 * grpcHttp2Servers) by one that drops a stream already destroyed or closed, and resets a stream
 * whose handler threw, instead of letting the throw escape. Call it after installLeanPath, so
 * that it wraps the lean hook too (the takers meet only live streams).
 */
import http2 from "node:http2";
import { wrapGrpcStreamListeners } from "./lean-path.js";

const guarded = new WeakSet<object>();

type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => void;

/** What the guard reports to the caller (a logger). */
export interface GuardReport {
  handlerThrew(err: unknown): void;
}

/** Guards every HTTP/2 server `grpcServer` has made so far; false (nothing changed) when grpc-js's internals are not as expected. */
export function guardGrpcStreams(grpcServer: object, report?: GuardReport): boolean {
  return wrapGrpcStreamListeners<StreamListener>(grpcServer, guarded, (listener) => guardListener(listener, report));
}

const ignore = (): void => {};

/**
 * True for a stream destroyed or closed before its 'stream' event: the caller drops it. Its
 * 'error' event (node emits one for a stream closed with an error code, a tick later) gets a
 * listener, since no handler will attach one and an unheard 'error' would end the process.
 */
function droppedIfGone(stream: http2.ServerHttp2Stream): boolean {
  if (!stream.destroyed && !stream.closed) return false;
  stream.on("error", ignore);
  return true;
}

/** `listener`, skipping streams gone before it runs and containing what it throws. */
function guardListener(listener: StreamListener, report?: GuardReport): StreamListener {
  return function (this: unknown, stream, headers, ...rest) {
    if (droppedIfGone(stream)) return;
    try {
      listener.call(this, stream, headers, ...rest);
    } catch (err) {
      report?.handlerThrew(err);
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  };
}
