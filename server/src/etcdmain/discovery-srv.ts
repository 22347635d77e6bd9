/**
 * DNS SRV discovery (--discovery-srv <domain>, --discovery-srv-name <suffix>): the initial
 * cluster from the domain's SRV records, as etcd 3.4 derives it.
 *
 * Each record of `_etcd-server-ssl[-<suffix>]._tcp.<domain>` is one member at
 * `https://<target>:<port>`. A record whose target resolves to the same address as one of this
 * member's advertised peer URLs is this member (named --name; its URL's scheme must be https);
 * the others are named "0", "1", ... in record order (priority, then weight).
 *
 * `_etcd-server[-<suffix>]._tcp.<domain>` (http) is looked up too, but etcd 3.4.23 uses its
 * records only when that lookup fails, that is never, and it fails when the https service has
 * none: an http-only SRV set-up fails in etcd 3.4 ("error querying DNS SRV records for
 * _etcd-server-ssl ..."), and so it does here. Addresses resolve as Go's ResolveTCPAddr does:
 * the first IPv4 address of a name, else its first IPv6 address.
 */
import { Resolver, promises as dnsPromises } from "node:dns";
import { isIP } from "node:net";
import type { Logger } from "../pkg/logger.js";

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

/** The DNS look-ups discovery makes; the default is the system's (or ETCD_TS_TEST_DNS_SERVER's). */
export interface DiscoveryResolver {
  /** SRV records of a full name. @throws an Error with a `code` (ENOTFOUND, ENODATA, ...) */
  resolveSrv(fqdn: string): Promise<SrvRecord[]>;
  /** Addresses of a host name (not an IP literal), IPv4 first. @throws when it has none */
  lookupHost(host: string): Promise<string[]>;
  /** The server named in Go-style errors ("lookup X on <server>: no such host"). */
  server(): string;
}

/**
 * The resolver discovery uses by default. ETCD_TS_TEST_DNS_SERVER=<ip>:<port> points it at one
 * DNS server instead of the system's: FOR TESTS ONLY (the test suite's DNS server runs on a
 * loopback port; the machine's resolver configuration is shared and must not change).
 */
export function defaultDiscoveryResolver(env: NodeJS.ProcessEnv = process.env): DiscoveryResolver {
  const testServer = env["ETCD_TS_TEST_DNS_SERVER"] ?? "";
  const resolver = new Resolver({ timeout: 5000, tries: 2 });
  if (testServer !== "") resolver.setServers([testServer]);
  const v4 = (h: string): Promise<string[]> => new Promise((res, rej) => resolver.resolve4(h, (e, a) => (e ? rej(e) : res(a))));
  const v6 = (h: string): Promise<string[]> => new Promise((res, rej) => resolver.resolve6(h, (e, a) => (e ? rej(e) : res(a))));
  return {
    resolveSrv: (fqdn) => new Promise((res, rej) => resolver.resolveSrv(fqdn, (e, a) => (e ? rej(e) : res(a)))),
    lookupHost: async (host) => {
      if (testServer === "") {
        const all = await dnsPromises.lookup(host, { all: true, verbatim: true });
        return [...all.filter((a) => a.family === 4), ...all.filter((a) => a.family === 6)].map((a) => a.address);
      }
      const found = [...(await v4(host).catch(() => [])), ...(await v6(host).catch(() => []))];
      if (found.length === 0) throw Object.assign(new Error(`lookup ${host}: no such host`), { code: "ENOTFOUND" });
      return found;
    },
    server: () => {
      const s = testServer !== "" ? testServer : (resolver.getServers()[0] ?? "127.0.0.53");
      return isIP(s) === 4 ? `${s}:53` : isIP(s) === 6 ? `[${s}]:53` : s;
    },
  };
}

/** Go's ResolveTCPAddr("tcp", host:port).String(): "ip:port" with the first IPv4 address. */
async function resolveTcp(host: string, port: string, resolver: DiscoveryResolver): Promise<string> {
  const bare = host.replace(/^\[|\]$/g, "");
  let ip: string;
  if (isIP(bare) !== 0) ip = bare;
  else {
    try {
      ip = (await resolver.lookupHost(bare))[0]!;
    } catch {
      throw new Error(`lookup ${bare} on ${resolver.server()}: no such host`);
    }
  }
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function hostPortOf(u: URL): [string, string] {
  return [u.hostname, u.port !== "" ? u.port : u.protocol === "https:" ? "443" : "80"];
}

/**
 * The "name=url" entries one SRV service gives (etcd's srv.GetCluster).
 * @throws Error "error querying DNS SRV records for _<service> <why>" when the service has no
 *   usable record.
 */
export async function clusterFromSrv(
  scheme: "https" | "http",
  service: string,
  name: string,
  domain: string,
  advertisePeerUrls: readonly string[],
  resolver: DiscoveryResolver,
): Promise<string[]> {
  const fail = (why: string): Error => new Error(`error querying DNS SRV records for _${service} ${why}`);
  const own = new Map<string, URL>();
  for (const u of advertisePeerUrls) {
    const url = new URL(u);
    try {
      own.set(await resolveTcp(...hostPortOf(url), resolver), url);
    } catch (err) {
      throw fail((err as Error).message);
    }
  }
  const fqdn = `_${service}._tcp.${domain.replace(/\.$/, "")}`;
  let records: SrvRecord[];
  try {
    records = await resolver.resolveSrv(fqdn);
  } catch {
    throw fail(`lookup ${fqdn} on ${resolver.server()}: no such host`);
  }
  records = [...records].sort((a, b) => a.priority - b.priority || b.weight - a.weight);
  const parts: string[] = [];
  let lastError: string | undefined;
  let tempName = 0;
  for (const r of records) {
    const target = r.name.replace(/\.$/, "");
    let addr: string;
    try {
      addr = await resolveTcp(target, String(r.port), resolver);
    } catch (err) {
      lastError = (err as Error).message;
      continue;
    }
    const mine = own.get(addr);
    const memberName = mine !== undefined ? name : String(tempName++);
    const hostPort = target.includes(":") ? `[${target}]:${r.port}` : `${target}:${r.port}`;
    if (mine !== undefined && mine.protocol !== `${scheme}:`) {
      lastError = `bootstrap at ${scheme}://${hostPort} from DNS for ${service} has scheme mismatch with expected peer ${mine.href.replace(/\/$/, "")}`;
    } else {
      parts.push(`${memberName}=${scheme}://${hostPort}`);
    }
  }
  if (parts.length === 0) throw fail(lastError ?? "<nil>");
  return parts;
}

/**
 * The initial cluster ("name=url,...") for --discovery-srv, as etcd 3.4.23 derives it (see the
 * module comment for its http quirk).
 * @throws Error with etcd's text: the https service's lookup error, or
 *   `cannot find local etcd member "<name>" in SRV records`.
 */
export async function initialClusterFromSrv(
  cfg: { name: string; discoverySrv: string; discoverySrvName: string; initialAdvertisePeerUrls: readonly string[] },
  resolver: DiscoveryResolver,
  logger: Logger,
): Promise<string> {
  const suffix = cfg.discoverySrvName !== "" ? `-${cfg.discoverySrvName}` : "";
  let cluster: string[] = [];
  let httpsError: Error | undefined;
  try {
    cluster = await clusterFromSrv("https", `etcd-server-ssl${suffix}`, cfg.name, cfg.discoverySrv, cfg.initialAdvertisePeerUrls, resolver);
  } catch (err) {
    httpsError = err as Error;
  }
  logger.info("get cluster for etcd-server-ssl SRV", { "service-name": `etcd-server-ssl${suffix}`, "discovery-srv": cfg.discoverySrv, "found-cluster": cluster, error: httpsError?.message });
  let httpError: Error | undefined;
  let httpCluster: string[] = [];
  try {
    httpCluster = await clusterFromSrv("http", `etcd-server${suffix}`, cfg.name, cfg.discoverySrv, cfg.initialAdvertisePeerUrls, resolver);
  } catch (err) {
    httpError = err as Error;
  }
  logger.info("get cluster for etcd-server SRV", { "service-name": `etcd-server${suffix}`, "discovery-srv": cfg.discoverySrv, "found-cluster": httpCluster, error: httpError?.message });
  if (httpsError !== undefined) {
    logger.warn("failed to resolve during SRV discovery", { error: httpsError.message });
    throw httpsError;
  }
  for (const node of cluster) logger.info("got bootstrap from DNS for etcd-server", { node });
  const names = new Set(cluster.map((p) => p.slice(0, p.indexOf("="))));
  if (!names.has(cfg.name)) throw new Error(`cannot find local etcd member "${cfg.name}" in SRV records`);
  return cluster.join(",");
}
