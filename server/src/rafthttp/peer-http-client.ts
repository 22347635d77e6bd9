/**
 * HTTP(S) requests to peers: one pooled agent for short requests (pipeline posts, snapshots,
 * lease forwarding) and one without pooling for the long-lived streams, each stream on its own
 * connection. With peer TLS the client presents --peer-cert-file/--peer-key-file, trusts
 * --peer-trusted-ca-file (the system's roots without one) and, with --peer-cert-allowed-cn,
 * accepts only a server certificate of that common name, as etcd's peer round trippers do.
 */
import http from "node:http";
import https from "node:https";
import { clientTlsOptions, type TlsInfo } from "../pkg/tls-info.js";

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
  private readonly unpooled: { http: http.Agent; https: https.Agent };
  private readonly dialTimeoutMs: number;

  constructor(options: PeerHttpClientOptions = {}) {
    this.dialTimeoutMs = options.dialTimeoutMs ?? 1000;
    const tlsOptions = clientTlsOptions(options.tls ?? {});
    this.pooled = { http: new http.Agent({ keepAlive: true, maxSockets: 8 }), https: new https.Agent({ ...tlsOptions, keepAlive: true, maxSockets: 8 }) };
    this.unpooled = { http: new http.Agent({ keepAlive: false }), https: new https.Agent({ ...tlsOptions, keepAlive: false }) };
  }

  /**
   * Sends a request with a whole body and reads the whole answer.
   * @throws PeerRequestError when no answer arrives within `timeoutMs` or the connection fails.
   */
  request(url: string, method: string, headers: Record<string, string>, body: Uint8Array | undefined, timeoutMs: number): Promise<PeerResponse> {
    return new Promise((resolve, reject) => {
      const req = this.open(url, method, headers, true);
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
   * Opens a long-lived GET: resolves with the answer's head (its body is the stream); the caller
   * owns the returned request and destroys it to close the stream.
   * @throws PeerRequestError when no answer head arrives within the dial timeout plus `headMs`.
   */
  openStream(url: string, headers: Record<string, string>, headMs: number): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
    return new Promise((resolve, reject) => {
      const req = this.open(url, "GET", headers, false);
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        req.destroy();
        reject(new PeerRequestError(`GET ${url}: timed out`));
      }, this.dialTimeoutMs + headMs);
      req.on("error", (err) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        reject(new PeerRequestError(`GET ${url}: ${err.message}`));
      });
      req.on("response", (res) => {
        clearTimeout(timer);
        if (settled) {
          res.destroy();
          return;
        }
        settled = true;
        resolve({ req, res });
      });
      req.end();
    });
  }

  /** Closes idle pooled connections. */
  close(): void {
    for (const a of [this.pooled.http, this.pooled.https, this.unpooled.http, this.unpooled.https]) a.destroy();
  }

  private open(url: string, method: string, headers: Record<string, string>, pooled: boolean): http.ClientRequest {
    const u = new URL(url);
    const secure = u.protocol === "https:";
    const agents = pooled ? this.pooled : this.unpooled;
    const options: http.RequestOptions = { method, headers, agent: secure ? agents.https : agents.http };
    const req = secure ? https.request(u, options) : http.request(u, options);
    req.setNoDelay(true);
    return req;
  }
}
