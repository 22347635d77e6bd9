/**
 * How a member finds its cluster at start-up, as etcd 3.4 does (etcdserver.NewServer's three
 * cases):
 *  - a WAL exists: the member restarts from it; --initial-cluster*, --discovery-srv are ignored;
 *  - no WAL, --initial-cluster-state new: a new cluster from the initial cluster (or the one DNS
 *    SRV discovery derives), checked by verifyBootstrap;
 *  - no WAL, --initial-cluster-state existing: the member joins a running cluster. It asks the
 *    other members listed in --initial-cluster for the cluster's member list
 *    (`GET <peer URL>/members`, first answer wins, 10 s per request), checks that the list and
 *    the initial cluster name the same members at the same peer URLs and that the cluster's
 *    version is one this member runs, and takes the member and cluster IDs from it. Raft then
 *    starts empty and learns the log and the membership from the leader.
 * Failures carry etcd's texts; the caller logs them and exits 1, as etcd does.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type tls from "node:tls";
import { isIP } from "node:net";
import { promises as dnsPromises } from "node:dns";
import { Wal } from "../wal/wal.js";
import { nullLogger, type Logger } from "../pkg/logger.js";
import { computeMemberId } from "../server/cluster/member-id.js";
import { ConfigError, parseInitialCluster, verifyBootstrap, type ServerConfig } from "./config.js";
import { defaultDiscoveryResolver, initialClusterFromSrv, type DiscoveryResolver } from "./discovery-srv.js";
import { DISCOVERY_ERRORS, DiscoveryError, joinDiscoveryCluster, type DiscoveryDeps } from "./discovery-v2.js";

/** etcd's per-request bound for the member list (GetClusterFromRemotePeers). */
export const MEMBERS_TIMEOUT_MS = 10_000;
/** Bound on one /version request (etcd leaves it to the peer transport's timeouts). */
export const VERSION_TIMEOUT_MS = 10_000;
/** The cluster versions this member runs with: [3.0.0, 3.4.x]. */
const MIN_CLUSTER_VERSION = [3, 0, 0] as const;
const MAX_CLUSTER_VERSION = [3, 4] as const;

/** One member as a peer's `/members` lists it. */
export interface RemoteMember {
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface RemoteCluster {
  clusterId: bigint;
  members: RemoteMember[];
}

/** One HTTP GET to a peer URL. */
export interface PeerGet {
  /** @throws on a connection error or when `timeoutMs` passes */
  (url: string, timeoutMs: number): Promise<{ status: number; header(name: string): string | undefined; body: string }>;
}

/** Host name → addresses (IPv4 first), for comparing peer URLs that differ as text. */
export type HostLookup = (host: string) => Promise<string[]>;

/**
 * A GET over the peer transport's TLS (`tlsOptions` for https peer URLs: --peer-cert-file,
 * --peer-key-file, --peer-trusted-ca-file; a self-signed peer pair skips verification).
 * Bodies are capped at 16 MiB.
 */
export function peerGet(tlsOptions: tls.ConnectionOptions = {}): PeerGet {
  return (url, timeoutMs) =>
    new Promise((resolve, reject) => {
      const u = new URL(url);
      const mod = u.protocol === "https:" ? https : http;
      const req = mod.get(u, { ...(u.protocol === "https:" ? tlsOptions : {}) }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > 16 * 1024 * 1024) req.destroy(new Error("response body too large"));
          else chunks.push(c);
        });
        res.on("end", () => {
          const headers = res.headers;
          resolve({
            status: res.statusCode ?? 0,
            header: (name) => {
              const v = headers[name.toLowerCase()];
              return Array.isArray(v) ? v[0] : v;
            },
            body: Buffer.concat(chunks).toString("utf8"),
          });
        });
        res.on("error", reject);
      });
      const timer = setTimeout(() => req.destroy(new Error(`Get "${url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`)), timeoutMs);
      req.on("close", () => clearTimeout(timer));
      req.on("error", reject);
    });
}

/**
 * JSON with every integer literal turned into a string before parsing, so that 64-bit IDs keep
 * every digit (JSON.parse would round them to doubles).
 */
function parseJsonExactIntegers(text: string): unknown {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
      if (m === null) throw new SyntaxError(`invalid character '${c}' in numeric literal`);
      out += m[1] === undefined && m[2] === undefined ? `"${m[0]}"` : m[0];
      i += m[0].length;
    } else {
      out += c;
      i++;
    }
  }
  return JSON.parse(out);
}

/**
 * A peer's `/members` body: `[{"id":<uint64>,"name":..,"peerURLs":[..],"clientURLs":[..],
 * "isLearner":..}]`.
 * @throws SyntaxError/TypeError when it is not that shape (etcd's json.Unmarshal fails too).
 */
export function parseMembers(body: string): RemoteMember[] {
  const doc = parseJsonExactIntegers(body);
  if (!Array.isArray(doc)) throw new TypeError("json: cannot unmarshal into Go value of type []*membership.Member");
  return doc.map((m: unknown) => {
    if (m === null || typeof m !== "object" || Array.isArray(m)) throw new TypeError("json: cannot unmarshal into Go value of type membership.Member");
    const r = m as Record<string, unknown>;
    const id = r["id"] ?? "0";
    if (typeof id !== "string" || !/^\d+$/.test(id) || BigInt(id) >= 1n << 64n) throw new TypeError(`json: cannot unmarshal ${String(id)} into Go struct field Member.id of type types.ID`);
    const strings = (v: unknown): string[] => (Array.isArray(v) && v.every((s) => typeof s === "string") ? (v as string[]) : []);
    return {
      id: BigInt(id),
      name: typeof r["name"] === "string" ? r["name"] : "",
      peerUrls: strings(r["peerURLs"]),
      clientUrls: strings(r["clientURLs"]),
      isLearner: r["isLearner"] === true,
    };
  });
}

/**
 * The running cluster, from the first of `urls` that answers `/members` with a member list and a
 * cluster ID (etcd's GetClusterFromRemotePeers).
 * @throws Error "could not retrieve cluster information from the given URLs" when none does, or
 *   "failed to get raft cluster member(s) from the given URLs" for an empty list.
 */
export async function fetchRemoteCluster(urls: readonly string[], get: PeerGet, logger: Logger, timeoutMs = MEMBERS_TIMEOUT_MS): Promise<RemoteCluster> {
  for (const u of urls) {
    const address = `${u}/members`;
    let res;
    try {
      res = await get(address, timeoutMs);
    } catch (err) {
      logger.warn("failed to get cluster response", { address, error: (err as Error).message });
      continue;
    }
    let members: RemoteMember[];
    try {
      members = parseMembers(res.body);
    } catch (err) {
      logger.warn("failed to unmarshal cluster response", { address, error: (err as Error).message });
      continue;
    }
    const header = res.header("X-Etcd-Cluster-ID") ?? "";
    if (!/^[0-9a-fA-F]{1,16}$/.test(header)) {
      logger.warn("failed to parse cluster ID", { address, header, error: `strconv.ParseUint: parsing ${JSON.stringify(header)}: invalid syntax` });
      continue;
    }
    if (members.length > 0) return { clusterId: BigInt(`0x${header}`), members };
    throw new Error("failed to get raft cluster member(s) from the given URLs");
  }
  throw new Error("could not retrieve cluster information from the given URLs");
}

/** Go's %q of a []string. */
const goQuote = (items: readonly string[]): string => `[${items.map((s) => JSON.stringify(s)).join(" ")}]`;

/** "scheme://ip:port" with the host resolved as Go's ResolveTCPAddr does (first IPv4). */
async function resolvedUrl(u: string, lookup: HostLookup): Promise<string> {
  const url = new URL(u);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const ip = isIP(host) !== 0 ? host : (await lookup(host))[0]!;
  return `${url.protocol}//${isIP(ip) === 6 ? `[${ip}]` : ip}:${url.port}`;
}

/**
 * etcd's URLStringsEqual: equal as sorted text, or once every host is resolved to an address.
 * @returns undefined when equal, else etcd's reason ("len(..) != len(..)", "resolved urls: ..").
 */
export async function peerUrlsDiffer(a: readonly string[], b: readonly string[], lookup: HostLookup): Promise<string | undefined> {
  if (a.length !== b.length) return `len(${goQuote(a)}) != len(${goQuote(b)})`;
  const sa = [...a].sort();
  const sb = [...b].sort();
  if (sa.every((u, i) => u === sb[i])) return undefined;
  let ra: string[];
  let rb: string[];
  try {
    ra = (await Promise.all(sa.map((u) => resolvedUrl(u, lookup)))).sort();
    rb = (await Promise.all(sb.map((u) => resolvedUrl(u, lookup)))).sort();
  } catch (err) {
    return (err as Error).message;
  }
  for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return `resolved urls: ${JSON.stringify(ra[i])} != ${JSON.stringify(rb[i])}`;
  return undefined;
}

/** etcd's RaftCluster String() (members by ID), as its "error validating peerURLs" names it. */
export function describeCluster(c: RemoteCluster): string {
  const ms = [...c.members]
    .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))
    .map((m) => `&{ID:${m.id.toString(16)} RaftAttributes:{PeerURLs:[${m.peerUrls.join(" ")}] IsLearner:${m.isLearner}} Attributes:{Name:${m.name} ClientURLs:[${m.clientUrls.join(" ")}]}}`);
  return `{ClusterID:${c.clusterId.toString(16)} Members:[${ms.join(" ")}] RemovedMemberIDs:[]}`;
}

/**
 * etcd's ValidateClusterAndAssignIDs: the running cluster and the initial cluster have as many
 * members, and each running member's peer URLs are some initial member's.
 * @returns name → the running member's ID, for every initial member.
 * @throws Error "member count is unequal" or "PeerURLs: no match found for existing member ...".
 */
export async function assignIdsFromRemote(
  initial: ReadonlyMap<string, readonly string[]>,
  token: string,
  remote: RemoteCluster,
  lookup: HostLookup,
): Promise<Map<string, bigint>> {
  if (remote.members.length !== initial.size) throw new Error("member count is unequal");
  const ids = new Map<string, bigint>();
  // Both sides in ID order, as etcd walks them (the initial members by the IDs a new cluster
  // would give them), so that the first mismatch reported is etcd's.
  const byId = <T>(list: T[], id: (t: T) => bigint): T[] => list.sort((x, y) => (id(x) < id(y) ? -1 : id(x) > id(y) ? 1 : 0));
  const local = byId([...initial].map(([name, urls]) => ({ name, urls, id: computeMemberId(urls, token) })), (l) => l.id);
  for (const m of byId([...remote.members], (r) => r.id)) {
    let why: string | undefined;
    let matched = false;
    for (const { name, urls } of local) {
      why = await peerUrlsDiffer(m.peerUrls, urls, lookup);
      if (why === undefined) {
        ids.set(name, m.id);
        matched = true;
        break;
      }
    }
    if (!matched) {
      throw new Error(`PeerURLs: no match found for existing member (${m.id.toString(16)}, [${m.peerUrls.join(" ")}]), last resolver error (${why ?? "<nil>"})`);
    }
  }
  return ids;
}

function parseSemver(v: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(v);
  return m === null ? undefined : [Number(m[1]), Number(m[2]), Number(m[3])];
}

const lessThan = (a: readonly number[], b: readonly number[]): boolean => {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0);
  return false;
};

/**
 * etcd's isCompatibleWithCluster: asks every other member's `/version` and is compatible when at
 * least one answers with a cluster version in [3.0.0, 3.4] and none is outside it.
 */
export async function compatibleWithCluster(remote: RemoteCluster, localId: bigint, get: PeerGet, logger: Logger): Promise<boolean> {
  let ok = false;
  for (const m of remote.members) {
    if (m.id === localId) continue;
    let cluster: string | undefined;
    for (const u of m.peerUrls) {
      try {
        const res = await get(`${u}/version`, VERSION_TIMEOUT_MS);
        const v = JSON.parse(res.body) as { etcdcluster?: unknown };
        cluster = typeof v.etcdcluster === "string" ? v.etcdcluster : "";
        break;
      } catch (err) {
        logger.warn("failed to reach the peer URL", { address: `${u}/version`, "remote-member-id": m.id.toString(16), error: (err as Error).message });
      }
    }
    if (cluster === undefined) continue;
    const v = parseSemver(cluster);
    if (v === undefined) {
      logger.warn("failed to parse cluster version of remote member", { "remote-member-id": m.id.toString(16), "remote-member-cluster-version": cluster });
      continue;
    }
    if (lessThan(v, MIN_CLUSTER_VERSION)) {
      logger.warn("cluster version of remote member is not compatible; too low", { "remote-member-id": m.id.toString(16), "remote-member-cluster-version": cluster });
      return false;
    }
    // As etcd: above major.minor.0 of this version is too high (cluster versions end in .0).
    if (lessThan([MAX_CLUSTER_VERSION[0], MAX_CLUSTER_VERSION[1], 0], v)) {
      logger.warn("cluster version of remote member is not compatible; too high", { "remote-member-id": m.id.toString(16), "remote-member-cluster-version": cluster });
      return false;
    }
    ok = true;
  }
  return ok;
}

/** What a member joining a running cluster takes from it. */
export interface JoinPlan {
  clusterId: bigint;
  memberId: bigint;
  remote: RemoteCluster;
}

/**
 * Joins a running cluster (no WAL, --initial-cluster-state existing): etcd's NewServer case
 * "!haveWAL && !NewCluster", after verifyBootstrap passed.
 * @throws Error with etcd's texts: "cannot fetch cluster info from peer urls: ...",
 *   "error validating peerURLs <cluster>: ...", "incompatible with current running cluster".
 */
export async function joinRunningCluster(
  cfg: { name: string; initialClusterToken: string },
  initial: ReadonlyMap<string, readonly string[]>,
  deps: { get: PeerGet; lookup?: HostLookup; logger: Logger; membersTimeoutMs?: number },
): Promise<JoinPlan> {
  const lookup = deps.lookup ?? defaultLookup;
  const remoteUrls = [...initial].filter(([name]) => name !== cfg.name).flatMap(([, urls]) => urls).sort();
  let remote: RemoteCluster;
  try {
    remote = await fetchRemoteCluster(remoteUrls, deps.get, deps.logger, deps.membersTimeoutMs);
  } catch (err) {
    throw new ConfigError(`cannot fetch cluster info from peer urls: ${(err as Error).message}`);
  }
  let ids: Map<string, bigint>;
  try {
    ids = await assignIdsFromRemote(initial, cfg.initialClusterToken, remote, lookup);
  } catch (err) {
    throw new ConfigError(`error validating peerURLs ${describeCluster(remote)}: ${(err as Error).message}`);
  }
  const memberId = ids.get(cfg.name)!;
  if (!(await compatibleWithCluster(remote, memberId, deps.get, deps.logger))) {
    throw new ConfigError("incompatible with current running cluster");
  }
  return { clusterId: remote.clusterId, memberId, remote };
}

async function defaultLookup(host: string): Promise<string[]> {
  const all = await dnsPromises.lookup(host, { all: true, verbatim: true });
  return [...all.filter((a) => a.family === 4), ...all.filter((a) => a.family === 6)].map((a) => a.address);
}

/** How the member starts: what bootstrapMember's initialCluster and joinExisting get. */
export interface StartPlan {
  /** Undefined: the member restarts from its WAL. */
  initialCluster: Map<string, string[]> | undefined;
  joinExisting?: { clusterId: bigint; memberId: bigint };
  /** Joining: the running cluster's members (the peers the transport dials first). */
  remotes?: RemoteMember[];
  /**
   * The name peers' https certificates are verified against (etcd's rule for SRV discovery
   * without --peer-trusted-ca-file: the discovery domain); undefined: each peer URL's host.
   */
  peerServerName?: string;
  /** The cluster token when it is not --initial-cluster-token's (v2 discovery: the discovery URL). */
  initialClusterToken?: string;
}

/**
 * TLS for dialling peers' https URLs: --peer-cert-file/--peer-key-file as the client pair,
 * --peer-trusted-ca-file as the CA; a self-signed pair (--peer-auto-tls) verifies nothing, as
 * etcd's does.
 */
export function peerClientTls(cfg: Pick<ServerConfig, "peerCertFile" | "peerKeyFile" | "peerTrustedCaFile" | "peerAutoTls">): tls.ConnectionOptions {
  const options: tls.ConnectionOptions = {};
  if (cfg.peerCertFile !== "" && cfg.peerKeyFile !== "") {
    options.cert = readFileSync(cfg.peerCertFile);
    options.key = readFileSync(cfg.peerKeyFile);
  }
  if (cfg.peerTrustedCaFile !== "") options.ca = readFileSync(cfg.peerTrustedCaFile);
  else if (cfg.peerAutoTls) options.rejectUnauthorized = false;
  return options;
}

/** The flags a member with a WAL ignores. */
const INITIAL_FLAGS = ["initial-cluster", "initial-cluster-state", "initial-cluster-token", "discovery-srv", "discovery-srv-name"];

/**
 * Decides how the member starts (the one call start-up makes before bootstrapMember):
 * restart from the WAL, start a new cluster, or join a running one.
 * @param walDir the member's WAL directory.
 * @throws ConfigError with etcd's text for every refusal (the caller exits 1).
 */
export async function planStart(
  cfg: ServerConfig,
  walDir: string,
  deps: { logger: Logger; get?: PeerGet; resolver?: DiscoveryResolver; lookup?: HostLookup; discovery?: Omit<DiscoveryDeps, "logger"> },
): Promise<StartPlan> {
  if (Wal.exists(walDir)) {
    const ignored = INITIAL_FLAGS.filter((f) => cfg.explicit.has(f));
    if (ignored.length > 0) deps.logger.warn("initial cluster flags are ignored: the member restarts from its WAL", { "wal-dir": walDir, flags: ignored });
    return { initialCluster: undefined };
  }
  let resolved = cfg;
  let lookup = deps.lookup ?? defaultLookup;
  if (cfg.discovery !== "" && cfg.initialClusterState === "new") {
    // etcd: the discovery URL is the cluster token; this member registers its advertised peer URLs.
    const token = cfg.discovery;
    const self = cfg.initialAdvertisePeerUrls.map((u) => `${cfg.name}=${u}`).sort().join(",");
    try {
      const initialCluster = await joinDiscoveryCluster(cfg.discovery, computeMemberId(cfg.initialAdvertisePeerUrls, token), self, { logger: deps.logger, ...(cfg.discoveryProxy !== "" ? { proxy: cfg.discoveryProxy } : {}), ...deps.discovery });
      resolved = { ...cfg, initialCluster, initialClusterToken: token };
    } catch (err) {
      if (!(err instanceof DiscoveryError)) throw err;
      if (err.message === DISCOVERY_ERRORS.fullCluster && cfg.discoveryFallback === "proxy") {
        throw new ConfigError(`failed to join discovery cluster (${err.message}); etcd would fall back to a v2 proxy (--discovery-fallback=proxy), which etcd-ts does not run`);
      }
      throw new ConfigError(`failed to join discovery cluster (${err.message})`);
    }
  }
  if (cfg.discoverySrv !== "") {
    const resolver = deps.resolver ?? defaultDiscoveryResolver();
    if (deps.lookup === undefined) lookup = (host) => resolver.lookupHost(host);
    try {
      resolved = { ...cfg, initialCluster: await initialClusterFromSrv(cfg, resolver, deps.logger) };
    } catch (err) {
      throw new ConfigError(`error setting up initial cluster: ${(err as Error).message}`);
    }
  }
  // As etcd, advertised peer URLs that differ from the initial cluster's only as host names
  // (resolving to the same addresses) match.
  if (cfg.initialClusterState === "new") {
    let own: string[] | undefined;
    try {
      own = parseInitialCluster(resolved.initialCluster).get(cfg.name);
    } catch {
      own = undefined; // verifyBootstrap reports it
    }
    if (own !== undefined && (await peerUrlsDiffer(cfg.initialAdvertisePeerUrls, own, lookup)) === undefined) {
      resolved = { ...resolved, initialAdvertisePeerUrls: own };
    }
  }
  const initialCluster = verifyBootstrap(resolved);
  // etcd: peers dialled over https found by SRV, with no CA given, are verified as the domain.
  const peerServerName = cfg.discoverySrv !== "" && resolved.initialCluster.includes("https://") && cfg.peerTrustedCaFile === "" ? cfg.discoverySrv : undefined;
  const get = deps.get ?? peerGet({ ...peerClientTls(cfg), ...(peerServerName !== undefined ? { servername: peerServerName } : {}) });
  if (cfg.initialClusterState === "new") {
    if (await alreadyBootstrapped(cfg, initialCluster, get)) {
      throw new ConfigError(`member ${computeMemberId(initialCluster.get(cfg.name)!, resolved.initialClusterToken).toString(16)} has already been bootstrapped`);
    }
    return { initialCluster, peerServerName, ...(resolved.initialClusterToken !== cfg.initialClusterToken ? { initialClusterToken: resolved.initialClusterToken } : {}) };
  }
  const plan = await joinRunningCluster(cfg, initialCluster, {
    get,
    lookup,
    logger: deps.logger,
  });
  deps.logger.info("joining a running cluster", {
    "cluster-id": plan.clusterId.toString(16),
    "local-member-id": plan.memberId.toString(16),
    members: plan.remote.members.map((m) => m.id.toString(16)),
  });
  return { initialCluster, joinExisting: { clusterId: plan.clusterId, memberId: plan.memberId }, remotes: plan.remote.members, peerServerName };
}

/** etcd's bootstrap timeout for asking peers whether a new member already runs. */
const BOOTSTRAP_PROBE_TIMEOUT_MS = 1_000;

/**
 * etcd's isMemberBootstrapped: a member starting a new cluster asks the other initial members
 * (1 s each, failures silent) and is refused if the cluster they run already has it published.
 */
async function alreadyBootstrapped(cfg: ServerConfig, initial: ReadonlyMap<string, readonly string[]>, get: PeerGet): Promise<boolean> {
  const urls = [...initial].filter(([name]) => name !== cfg.name).flatMap(([, u]) => u).sort();
  if (urls.length === 0) return false;
  let remote: RemoteCluster;
  try {
    remote = await fetchRemoteCluster(urls, get, nullLogger, BOOTSTRAP_PROBE_TIMEOUT_MS);
  } catch {
    return false;
  }
  const id = computeMemberId(initial.get(cfg.name)!, cfg.initialClusterToken);
  const m = remote.members.find((r) => r.id === id);
  return m !== undefined && m.clientUrls.length > 0;
}

