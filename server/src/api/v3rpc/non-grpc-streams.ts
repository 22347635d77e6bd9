/**
 * HTTP/2 requests that are not gRPC go to the HTTP handler, as etcd's grpcHandlerFunc sends them
 * (a content-type without "application/grpc": /health, /version, /metrics, the JSON gateway,
 * over HTTP/2 as curl and browsers speak it on a TLS port). grpc-js would answer them 415.
 *
 * Two doors, one rule (`isGrpcRequest`):
 * - streams of connections node:http2 serves for grpc-js (--client-cert-auth listeners,
 *   ETCD_TS_H2=node): `routeNonGrpcStreams` wraps each of grpc-js's HTTP/2 servers' 'stream'
 *   listeners (install it after the lean hook, before the guard) and hands such a stream to the
 *   caller, who emits it on an HTTP/2 server in compatibility mode (its 'request' handler);
 * - streams of pkg/h2 connections: OwnH2Server checks the same rule before its takers and
 *   bridges such a stream to that server instead of grpc-js.
 */
import type http2 from "node:http2";
import { wrapGrpcStreamListeners } from "./lean-path.js";

/** Whether a request's content-type names gRPC (etcd's test: it contains "application/grpc"). */
export function isGrpcContentType(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.includes("application/grpc");
}

/** The same test on pkg/h2's header list ([name0, value0, ...], names lower case). */
export function isGrpcRequest(headers: readonly string[]): boolean {
  for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i] === "content-type") return isGrpcContentType(headers[i + 1]);
  return false;
}

type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

const routed = new WeakSet<object>();

/**
 * Wraps the 'stream' listeners of grpc-js's HTTP/2 servers so that a request that is not gRPC
 * goes to `other` instead. False (nothing changed) when grpc-js's internals are not as expected.
 */
export function routeNonGrpcStreams(grpcServer: object, other: StreamListener): boolean {
  return wrapGrpcStreamListeners<StreamListener>(grpcServer, routed, (listener) =>
    function (this: unknown, stream, headers, flags, rawHeaders) {
      const contentType = headers["content-type"];
      if (isGrpcContentType(typeof contentType === "string" ? contentType : undefined)) listener.call(this, stream, headers, flags, rawHeaders);
      else other(stream, headers, flags, rawHeaders);
    } as StreamListener,
  );
}
