/**
 * The operator's HTTP endpoint (`--metrics-address`, default `:8080`): `GET /metrics` (the
 * Prometheus text exposition), `/healthz` (200 while the process serves), `/readyz` (200 once the
 * operator is wired and running, 503 before and while stopping). Anything else is 404. Not a
 * public API: it serves the pod network, without TLS or authentication.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface MetricsSource {
  scrape(): Promise<{ contentType: string; body: string }>;
}

export interface MetricsServerOptions {
  /** "host:port", ":port" (every interface) or "port". */
  address: string;
}

export class MetricsServer {
  private readonly server: http.Server;
  private ready = false;

  constructor(
    private readonly options: MetricsServerOptions,
    private readonly deps: { metrics: MetricsSource; log: { warn(m: string, f?: Record<string, unknown>): void } },
  ) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 5_000;
    this.server.headersTimeout = 10_000;
  }

  /** Listens; resolves with the bound "host:port". */
  async listen(): Promise<string> {
    const { host, port } = parseAddress(this.options.address);
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const a = this.server.address() as AddressInfo;
    return `${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
  }

  setReady(ready: boolean): void {
    this.ready = ready;
  }

  async close(): Promise<void> {
    this.ready = false;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    try {
      if (path === "/metrics") {
        const { contentType, body } = await this.deps.metrics.scrape();
        res.writeHead(200, { "content-type": contentType }).end(req.method === "HEAD" ? undefined : body);
      } else if (path === "/healthz") {
        res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      } else if (path === "/readyz") {
        res.writeHead(this.ready ? 200 : 503, { "content-type": "text/plain" }).end(this.ready ? "ok\n" : "not ready\n");
      } else {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      }
    } catch (err) {
      this.deps.log.warn("metrics endpoint failed", { path, error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end("error\n");
    }
  }
}

/** ":8080" → every interface; "127.0.0.1:0"; "[::1]:9090"; "8080". */
export function parseAddress(address: string): { host: string | undefined; port: number } {
  const a = address.trim();
  const i = a.lastIndexOf(":");
  let host = i < 0 ? "" : a.slice(0, i);
  const portText = i < 0 ? a : a.slice(i + 1);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535 || host.includes("[") || host.includes("]")) throw new Error(`not an address: ${address} (use host:port or :port)`);
  return { host: host === "" ? undefined : host, port };
}
