/**
 * HTTP(S) requests to peers: a pooled agent for short requests (pipeline posts, snapshots,
 * lease forwarding); the long-lived streams each on a connection of their own, read without
 * node:http (stream-dial.ts). With peer TLS the client presents --peer-cert-file/--peer-key-file, trusts
 * --peer-trusted-ca-file (the system's roots without one) and, with --peer-cert-allowed-cn,
 * accepts only a server certificate of that common name, as etcd's peer round trippers do.
 */
import http from "node:http";
import https from "node:https";
import { clientTlsOptions, type TlsInfo } from "../pkg/tls-info.js";
import { dialStream, type StreamAnswer } from "./stream-dial.js";

/** The client side of peer TLS (see pkg/tls-info.ts for the CN and host-name rules). */
export type PeerClientTls = TlsInfo;

export interface PeerHttpClientOptions {
  tls?: PeerClientTls;
  /** How long to wait for a connection (etcd's peer dial timeout: 1 s). */
  dialTimeoutMs?: number;
}

export interface PeerResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request to a peer failed below HTTP (refused, reset, timed out, TLS). */
export class PeerRequestError extends Error {
  override name = "PeerRequestError";
}

/** Bodies of short answers are read up to this many bytes (they are texts or small protobufs). */
const MAX_SHORT_ANSWER_BYTES = 4 * 1024 * 1024;

export class PeerHttpClient {
  private readonly pooled: { http: http.Agent; https: https.Agent };
  private readonly dialTimeoutMs: number;
  private readonly tlsOptions: https.AgentOptions;

  constructor(options: PeerHttpClientOptions = {}) {
    this.dialTimeoutMs = options.dialTimeoutMs ?? 1000;
    const tlsOptions = clientTlsOptions(options.tls ?? {});
    this.tlsOptions = tlsOptions;
    this.pooled = { http: new http.Agent({ keepAlive: true, maxSockets: 8 }), https: new https.Agent({ ...tlsOptions, keepAlive: true, maxSockets: 8 }) };
  }

  /**
   * Sends a request with a whole body and reads the whole answer.
   * @throws PeerRequestError when no answer arrives within `timeoutMs` or the connection fails.
   */
  request(url: string, method: string, headers: Record<string, string>, body: Uint8Array | undefined, timeoutMs: number): Promise<PeerResponse> {
    return new Promise((resolve, reject) => {
      const req = this.open(url, method, headers);
      let done = false;
      const fail = (err: Error): void => {
        if (done) return;
        done = true;
        req.destroy();
        reject(new PeerRequestError(`${method} ${url}: ${err.message}`));
      };
      const timer = setTimeout(() => fail(new Error("timed out")), timeoutMs);
      req.on("error", fail);
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_SHORT_ANSWER_BYTES) fail(new Error("answer too large"));
          else chunks.push(c);
        });
        res.on("error", fail);
        res.on("end", () => {
          clearTimeout(timer);
          if (done) return;
          done = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
      });
      req.end(body === undefined ? undefined : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    });
  }

  /**
   * Opens a long-lived GET on a connection of its own (stream-dial.ts): resolves with the
   * answer's head; its body is the stream, and destroying the answer closes it.
   * @throws StreamDialError when no answer head arrives within the dial timeout plus `headMs`.
   */
  openStream(url: string, headers: Record<string, string>, headMs: number): Promise<StreamAnswer> {
    return dialStream(url, headers, { tls: this.tlsOptions, timeoutMs: this.dialTimeoutMs + headMs });
  }

  /** Closes idle pooled connections. */
  close(): void {
    for (const a of [this.pooled.http, this.pooled.https]) a.destroy();
  }

  private open(url: string, method: string, headers: Record<string, string>): http.ClientRequest {
    const u = new URL(url);
    const secure = u.protocol === "https:";
    const options: http.RequestOptions = { method, headers, agent: secure ? this.pooled.https : this.pooled.http };
    const req = secure ? https.request(u, options) : http.request(u, options);
    req.setNoDelay(true);
    return req;
  }
}
