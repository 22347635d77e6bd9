/**
 * One client port, two protocols, as etcd serves them: each accepted connection is sniffed; an
 * HTTP/2 connection preface goes to the gRPC server (through grpc-js's connection injector), any
 * other first bytes to the HTTP/1.1 handler (/health, /version, /metrics, the JSON gateway).
 * TLS, when configured, wraps the socket before the sniffing.
 */
import net from "node:net";
import tls from "node:tls";
import http from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "../pkg/logger.js";
import { AuthorityRewriter } from "./h2-authority.js";

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** Bytes a client may trickle before we must decide; the preface is 24 bytes. */
const SNIFF_TIMEOUT_MS = 10_000;

export interface ClientListenerDeps {
  injectGrpc: (conn: Duplex) => void;
  http1: http.Server;
  logger: Logger;
}

export interface ClientListenerOptions {
  url: URL;
  tls?: tls.TlsOptions;
}

/** Routes one connection by its first bytes. */
export function sniffConnection(socket: Duplex, deps: ClientListenerDeps): void {
  let buffered = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
  const onError = (): void => {
    clearTimeout(timer);
  };
  socket.on("error", onError);
  const onData = (chunk: Buffer): void => {
    buffered = Buffer.concat([buffered, chunk]);
    const n = Math.min(buffered.length, H2_PREFACE.length);
    const isH2Prefix = buffered.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isH2Prefix && buffered.length < H2_PREFACE.length) return; // need more bytes
    clearTimeout(timer);
    socket.removeListener("data", onData);
    socket.removeListener("error", onError);
    socket.pause();
    socket.unshift(buffered);
    if (isH2Prefix) {
      // Go clients may send a full URL as :authority, which Node's HTTP/2 rejects: the
      // rewriter makes it acceptable (see h2-authority.ts).
      deps.injectGrpc(new AuthorityRewriter(socket));
    } else {
      deps.http1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
}

/** Listens on one client URL; resolves once bound. */
export function listenClient(options: ClientListenerOptions, deps: ClientListenerDeps): Promise<net.Server> {
  const server = options.tls
    ? tls.createServer({ ...options.tls, ALPNProtocols: ["h2", "http/1.1"] }, (s) => sniffConnection(s, deps))
    : net.createServer((s) => {
        s.setNoDelay(true);
        sniffConnection(s, deps);
      });
  server.on("error", (err) => deps.logger.error("client listener error", { error: String(err) }));
  const host = options.url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(options.url.port || (options.url.protocol === "https:" ? 443 : 80));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: host === "localhost" ? "127.0.0.1" : host, port }, () => {
      server.removeListener("error", reject);
      resolve(server);
    });
  });
}
