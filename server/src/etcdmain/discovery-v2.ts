/**
 * --discovery: etcd's v2 discovery protocol (etcdserver/api/v2discovery), against a discovery
 * service that speaks the v2 keys API (discovery.etcd.io, or any etcd with --enable-v2 under a
 * path such as http://host:2379/v2/keys/discovery/<token>).
 *
 * The URL's path is the token directory; its `_config/size` key holds the cluster's size. A new
 * member registers "<name>=<peer URL>,..." under its member ID (computed with the discovery URL
 * as the cluster token), waits until `size` members have registered, and the first `size` by
 * creation order are the initial cluster. A member that finds `size` others registered before
 * it gets "discovery: cluster is full". The service unreachable: retried with etcd's backoff
 * (2^n seconds, at most 256), without end.
 */
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import type { Logger } from "../pkg/logger.js";

/** etcd's discovery errors (their texts are etcd's). */
export const DISCOVERY_ERRORS = {
  invalidUrl: "discovery: invalid URL",
  badSizeKey: "discovery: size key is bad",
  sizeNotFound: "discovery: size key not found",
  duplicateId: "discovery: found duplicate id",
  duplicateName: "discovery: found duplicate name",
  fullCluster: "discovery: cluster is full",
  badEndpoint: "discovery: bad discovery endpoint",
} as const;

export class DiscoveryError extends Error {
  override name = "DiscoveryError";
}

/** One v2 keys API answer. */
export interface V2Answer {
  status: number;
  /** X-Etcd-Index. */
  index: number;
  body: string;
}

export interface DiscoveryDeps {
  /** An HTTP request to the discovery service; rejects when it cannot be reached. */
  request?(method: "GET" | "PUT", url: string, form?: string): Promise<V2Answer>;
  /** --discovery-proxy: the HTTP proxy the service is reached through. */
  proxy?: string;
  /** Waits between retries (tests pass a fast one). */
  sleep?(ms: number): Promise<void>;
  logger: Logger;
}

interface V2Node {
  key: string;
  value?: string;
  createdIndex: number;
  modifiedIndex: number;
  nodes?: V2Node[];
}

/** Thrown when the service could not be reached: the step is retried after a backoff. */
class Unreachable extends Error {}

/**
 * --discovery-proxy as Go's http.ProxyURL: an http URL is asked of the proxy by its absolute URI,
 * an https one through a CONNECT tunnel. A proxy without a scheme is http.
 */
export function proxiedRequestOptions(url: URL, proxy: string | undefined): Promise<http.RequestOptions> {
  if (proxy === undefined || proxy === "") return Promise.resolve({});
  const p = new URL(/^https?:\/\//.test(proxy) ? proxy : `http://${proxy}`);
  const proxyPort = Number(p.port || (p.protocol === "https:" ? 443 : 80));
  if (url.protocol === "http:") return Promise.resolve({ host: p.hostname, port: proxyPort, path: url.href, headers: { host: url.host } });
  return new Promise((resolve, reject) => {
    const connect = http.request({ host: p.hostname, port: proxyPort, method: "CONNECT", path: `${url.hostname}:${url.port || 443}` });
    connect.on("connect", (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new Unreachable(`proxy answered ${res.statusCode} to CONNECT`));
        return;
      }
      resolve({ createConnection: () => tls.connect({ socket, servername: url.hostname }) } as http.RequestOptions);
    });
    connect.on("error", (err) => reject(new Unreachable(err.message)));
    connect.end();
  });
}

async function httpRequest(method: "GET" | "PUT", url: string, form?: string, proxy?: string): Promise<V2Answer> {
  const u = new URL(url);
  const via = await proxiedRequestOptions(u, proxy);
  return new Promise((resolve, reject) => {
    const lib = u.protocol === "https:" ? https : http;
    const headers = { ...((via.headers as Record<string, string> | undefined) ?? {}), ...(form === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" }) };
    const req = lib.request(u, { method, ...via, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, index: Number(res.headers["x-etcd-index"] ?? 0), body }));
      res.on("error", (err) => reject(new Unreachable(err.message)));
    });
    req.on("error", (err) => reject(new Unreachable(err.message)));
    req.end(form);
  });
}

/**
 * Registers this member with the discovery service at `durl` and waits for the rest; resolves
 * the initial cluster ("name=url,name=url,...").
 * @param memberId this member's ID (from its advertised peer URLs and `durl` as the token)
 * @param self this member's entry ("name=url,name=url" for each advertised peer URL)
 * @throws DiscoveryError with etcd's text
 */
export async function joinDiscoveryCluster(durl: string, memberId: bigint, self: string, deps: DiscoveryDeps): Promise<string> {
  const request = deps.request ?? ((method: "GET" | "PUT", url: string, form?: string) => httpRequest(method, url, form, deps.proxy));
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const u = new URL(durl);
  const token = u.pathname.replace(/\/+$/, "");
  const base = `${u.protocol}//${u.host}`;
  const selfKey = `${token}/${memberId.toString(16)}`;
  let retries = 0;

  /** Runs `step`, retrying with etcd's backoff while the service cannot be reached. */
  const withRetry = async <T>(what: string, step: () => Promise<T>): Promise<T> => {
    for (;;) {
      try {
        return await step();
      } catch (err) {
        if (!(err instanceof Unreachable)) throw err;
        retries++;
        const backoffMs = 2 ** Math.min(retries, 8) * 1000;
        deps.logger.warn("retry connecting to discovery service", { url: durl, reason: err.message, backoff: `${backoffMs / 1000}s`, step: what });
        await sleep(backoffMs);
      }
    }
  };
  const json = (a: V2Answer): { node?: V2Node; errorCode?: number } => {
    try {
      return JSON.parse(a.body) as { node?: V2Node; errorCode?: number };
    } catch {
      throw new DiscoveryError(DISCOVERY_ERRORS.badEndpoint);
    }
  };

  const checkCluster = async (): Promise<{ nodes: V2Node[]; size: number; index: number; full: boolean }> => {
    const sizeAnswer = await request("GET", `${base}${token}/_config/size`);
    const sizeBody = json(sizeAnswer);
    if (sizeBody.errorCode === 100) throw new DiscoveryError(DISCOVERY_ERRORS.sizeNotFound);
    const size = Number(sizeBody.node?.value);
    if (!/^\d+$/.test(sizeBody.node?.value ?? "") || !Number.isSafeInteger(size)) throw new DiscoveryError(DISCOVERY_ERRORS.badSizeKey);
    const dirAnswer = await request("GET", `${base}${token}`);
    const dir = json(dirAnswer);
    if (dir.node === undefined) throw new DiscoveryError(`discovery: ${dirAnswer.body.trim()}`);
    const nodes = (dir.node.nodes ?? []).filter((n) => basename(n.key) !== "_config").sort((a, b) => a.createdIndex - b.createdIndex);
    for (let i = 0; i < nodes.length; i++) {
      if (basename(nodes[i]!.key) === basename(selfKey)) break;
      if (i >= size - 1) return { nodes: nodes.slice(0, size), size, index: dirAnswer.index, full: true };
    }
    return { nodes, size, index: dirAnswer.index, full: false };
  };
  const checkNotFull = async (): Promise<{ nodes: V2Node[]; size: number; index: number }> => {
    const c = await withRetry("cluster status check", checkCluster);
    if (c.full) throw new DiscoveryError(DISCOVERY_ERRORS.fullCluster);
    return c;
  };

  // The fast path: a full cluster is refused before registering.
  await checkNotFull();
  await withRetry("registering", async () => {
    const a = await request("PUT", `${base}${selfKey}?prevExist=false`, `value=${encodeURIComponent(self)}`);
    const body = json(a);
    if (body.errorCode === 105) throw new DiscoveryError(DISCOVERY_ERRORS.duplicateId);
    if (a.status !== 201) throw new DiscoveryError(`discovery: ${a.body.trim()}`);
  });
  let { nodes, size, index } = await checkNotFull();
  let all = nodes.slice(0, size);
  for (const n of all) deps.logger.info(basename(n.key) === basename(selfKey) ? "found self from discovery server" : "found peer from discovery server", { self: n.value });
  // Wait for the rest: every change under the token directory after `index` (etcd's watcher).
  while (all.length < size) {
    deps.logger.info("found peers from discovery server; waiting for more", { "discovery-url": durl, "found-peers": all.length, "needed-peers": size - all.length });
    let waited: V2Node | undefined;
    try {
      const a = await request("GET", `${base}${token}?wait=true&recursive=true&waitIndex=${index + 1}`);
      waited = json(a).node;
    } catch (err) {
      if (!(err instanceof Unreachable)) throw err;
      // As etcd's waitNodesRetry: back off, then look at the directory afresh.
      retries++;
      await sleep(2 ** Math.min(retries, 8) * 1000);
      ({ nodes, size, index } = await checkNotFull());
      all = nodes.slice(0, size);
      continue;
    }
    if (waited === undefined) continue;
    index = waited.modifiedIndex;
    all.push(waited);
    deps.logger.info("found peer from discovery server", { peer: waited.value });
  }
  deps.logger.info("found all needed peers from discovery server", { "discovery-url": durl, "found-peers": all.map((n) => n.value).join(",") });
  const cluster = all.map((n) => n.value ?? "").join(",");
  const names = new Set<string>();
  for (const entry of cluster.split(",")) {
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new DiscoveryError(DISCOVERY_ERRORS.invalidUrl);
    names.add(entry.slice(0, eq));
  }
  if (names.size !== size) throw new DiscoveryError(DISCOVERY_ERRORS.duplicateName);
  return cluster;
}

function basename(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}
