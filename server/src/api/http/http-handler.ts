/**
 * The HTTP/1.1 side of the client port: /health, /livez, /readyz, /version, /metrics, and the
 * v3 JSON gateway under /v3/ and /v3beta/ (gateway/gateway.ts).
 */
import type http from "node:http";
import type tls from "node:tls";
import { AlarmType } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { Logger } from "../../pkg/logger.js";
import type { EtcdServer } from "../../server/etcd-server.js";
import { CLUSTER_VERSION, ETCD_API_VERSION } from "../../server/etcd-server.js";
import type { ServiceRegistry } from "../v3rpc/service-registry.js";
import { Gateway, gatewayBodyBytesMax, gatewayMessageBytesMax } from "../gateway/gateway.js";
import { goHttpError, goMethodNotAllowed } from "../../pkg/go-http-error.js";
import type { Metrics } from "./metrics.js";

/** etcd's health check gives a proposal this long to commit. */
const HEALTH_TIMEOUT_MS = 1000;

async function healthy(server: EtcdServer, excludedAlarms: ReadonlySet<string>): Promise<boolean> {
  if (server.alarms.some((a) => !excludedAlarms.has(AlarmType[a.alarm] ?? String(a.alarm))) || server.leader === 0n) return false;
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

/**
 * GET /health: a round through the log, as etcd's; counted in the metrics. `?exclude=NOSPACE`
 * (repeatable) leaves that alarm out of the verdict. Answers as etcd 3.4's handler writes them:
 * 200 with the JSON (which Go sniffs as plain text), 503 through http.Error, 405 for another method.
 */
function serveHealth(server: EtcdServer, metrics: Metrics, req: http.IncomingMessage, url: URL, res: http.ServerResponse): void {
  if (req.method !== "GET") {
    goMethodNotAllowed(res, "GET");
    return;
  }
  const excluded = new Set(url.searchParams.getAll("exclude"));
  void healthy(server, excluded).then((ok) => {
    metrics.recordHealth(ok);
    const body = JSON.stringify({ health: ok ? "true" : "false" });
    if (!ok) return goHttpError(res, 503, body);
    res.statusCode = 200;
    res.setHeader("Content-Type", "text/plain; charset=utf-8");
    res.end(body);
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
    const url = new URL(req.url ?? "/", "http://localhost");
    const path = url.pathname;
    if (path === "/metrics") serveMetrics(metrics, res);
    else if (path === "/health") serveHealth(server, metrics, req, url, res);
    else goHttpError(res, 404, "404 page not found");
  };
}

/** Serves the v2 API's paths (api/v2http), when --enable-v2 is on. */
export type V2PathHandler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void;

/** --cors and --host-whitelist as etcd keeps them: "*" (or an empty list) allows every origin or host. */
export interface HttpAccess {
  cors: readonly string[];
  hostWhitelist: readonly string[];
  /** The requests came over TLS whatever their socket says (HTTP/2 bridged from a TLS connection). */
  tls?: boolean;
}

/** etcd's AccessController: an empty list or one holding "*" allows everything. */
function allows(list: ReadonlySet<string>, value: string): boolean {
  return list.size === 0 || list.has("*") || list.has(value);
}

/** Go's httputil.GetHostname: the Host header without its port (the whole header when it does not split). */
function hostnameOf(host: string): string {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):[^:]*$/.exec(host);
  return m === null ? host : (m[1] ?? m[2]!);
}

/** etcd's answer to a plain-HTTP request whose Host is not in --host-whitelist (CVE-2018-5702). */
function dnsRebindingText(host: string): string {
  return `
etcd received your request, but the Host header was unrecognized.

To fix this, choose one of the following options:
- Enable TLS, then any HTTPS request will be allowed.
- Add the hostname you want to use to the whitelist in settings.
  - e.g. etcd --host-whitelist ${JSON.stringify(host)}

This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).
`;
}

/**
 * The handler for `server`; the gateway runs the gRPC services in `services`; `v2` serves /v2/
 * (without it, as etcd 3.4 without --enable-v2, those paths are 404). Every request first passes
 * etcd's access controller: a plain-HTTP request must name a whitelisted host (else 421), allowed
 * origins get the CORS headers, and OPTIONS is answered 200 at once.
 */
export function httpHandler(server: EtcdServer, metrics: Metrics, services: ServiceRegistry, access: HttpAccess, logger: Logger, v2?: V2PathHandler): http.RequestListener {
  const messageBytesMax = gatewayMessageBytesMax(server.options.maxRequestBytes);
  const gateway = new Gateway({ messageBytesMax, bodyBytesMax: gatewayBodyBytesMax(messageBytesMax) }, services);
  const cors = new Set(access.cors);
  const hosts = new Set(access.hostWhitelist);
  return (req, res) => {
    if (access.tls !== true && (req.socket as tls.TLSSocket).encrypted !== true) {
      // HTTP/2 carries the host as :authority (Go's Request.Host either way).
      const host = hostnameOf(req.headers.host ?? (req.headers[":authority"] as string | undefined) ?? "");
      if (!allows(hosts, host)) {
        logger.warn("rejecting HTTP request to prevent DNS rebinding attacks", { host });
        return goHttpError(res, 421, dnsRebindingText(host));
      }
    }
    const origin = allows(cors, "*") ? "*" : typeof req.headers.origin === "string" && allows(cors, req.headers.origin) ? req.headers.origin : undefined;
    if (origin !== undefined) {
      res.setHeader("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE");
      res.setHeader("Access-Control-Allow-Origin", origin);
      res.setHeader("Access-Control-Allow-Headers", "accept, content-type, authorization");
    }
    if (req.method === "OPTIONS") {
      res.statusCode = 200;
      res.end();
      return;
    }
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
        serveHealth(server, metrics, req, url, res);
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
        goHttpError(res, 404, "404 page not found");
    }
  };
}
