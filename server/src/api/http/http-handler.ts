/**
 * The HTTP/1.1 side of the client port: /health, /livez, /readyz, /version, /metrics, and the
 * v3 JSON gateway under /v3/ and /v3beta/ (gateway/gateway.ts).
 */
import type http from "node:http";
import type { EtcdServer } from "../../server/etcd-server.js";
import { CLUSTER_VERSION, ETCD_API_VERSION } from "../../server/etcd-server.js";
import type { ServiceRegistry } from "../v3rpc/service-registry.js";
import { Gateway, gatewayBodyBytesMax, gatewayMessageBytesMax } from "../gateway/gateway.js";
import type { Metrics } from "./metrics.js";

/** etcd's health check gives a proposal this long to commit. */
const HEALTH_TIMEOUT_MS = 1000;

async function healthy(server: EtcdServer): Promise<boolean> {
  if (server.alarms.length > 0 || server.leader === 0n) return false;
  let timer: NodeJS.Timeout | undefined;
  try {
    // Like etcd 3.4, a health check is a real round through the log.
    await Promise.race([
      server.proposeNoop(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("timeout")), HEALTH_TIMEOUT_MS);
      }),
    ]);
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** GET /health: a round through the log, as etcd's; counted in the metrics. */
function serveHealth(server: EtcdServer, metrics: Metrics, res: http.ServerResponse): void {
  void healthy(server).then((ok) => {
    metrics.recordHealth(ok);
    res.statusCode = ok ? 200 : 503;
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ health: ok ? "true" : "false" }));
  });
}

/** GET /metrics: the exposition (metrics.ts). */
function serveMetrics(metrics: Metrics, res: http.ServerResponse): void {
  metrics.text().then(
    (text) => {
      res.setHeader("Content-Type", metrics.contentType);
      res.end(text);
    },
    (err: Error) => {
      res.statusCode = 500;
      res.end(String(err));
    },
  );
}

/**
 * The handler of a --listen-metrics-urls listener: /metrics and /health only, as etcd serves
 * there; anything else is 404.
 */
export function metricsHandler(server: EtcdServer, metrics: Metrics): http.RequestListener {
  return (req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path === "/metrics") serveMetrics(metrics, res);
    else if (path === "/health") serveHealth(server, metrics, res);
    else {
      res.statusCode = 404;
      res.setHeader("Content-Type", "text/plain; charset=utf-8");
      res.end("404 page not found\n");
    }
  };
}

/** Serves the v2 API's paths (api/v2http), when --enable-v2 is on. */
export type V2PathHandler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void;

/**
 * The handler for `server`; the gateway runs the gRPC services in `services`; `v2` serves /v2/
 * (without it, as etcd 3.4 without --enable-v2, those paths are 404).
 */
export function httpHandler(server: EtcdServer, metrics: Metrics, services: ServiceRegistry, v2?: V2PathHandler): http.RequestListener {
  const messageBytesMax = gatewayMessageBytesMax(server.options.maxRequestBytes);
  const gateway = new Gateway({ messageBytesMax, bodyBytesMax: gatewayBodyBytesMax(messageBytesMax) }, services);
  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (gateway.owns(url.pathname)) {
      gateway.handle(req, res, url.pathname);
      return;
    }
    if (v2 !== undefined && (url.pathname === "/v2" || url.pathname.startsWith("/v2/"))) {
      v2(req, res, url);
      return;
    }
    const json = (status: number, body: unknown): void => {
      res.statusCode = status;
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify(body));
    };
    switch (url.pathname) {
      case "/health":
        serveHealth(server, metrics, res);
        return;
      case "/livez":
        res.end("ok");
        return;
      case "/readyz":
        res.statusCode = server.leader !== 0n ? 200 : 503;
        res.end(server.leader !== 0n ? "ok" : "not ready");
        return;
      case "/version":
        json(200, { etcdserver: ETCD_API_VERSION, etcdcluster: server.membership.clusterVersion || CLUSTER_VERSION });
        return;
      case "/metrics":
        serveMetrics(metrics, res);
        return;
      default:
        res.statusCode = 404;
        res.setHeader("Content-Type", "text/plain; charset=utf-8");
        res.end("404 page not found\n");
    }
  };
}
