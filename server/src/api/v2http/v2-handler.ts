/**
 * etcd 3.4's v2 HTTP API on the client port, served with --enable-v2: `/v2/keys` (keys.ts),
 * `/v2/members` (GET, POST, DELETE, PUT and GET /v2/members/leader, as etcd's membersHandler),
 * `/v2/stats/self|leader|store` and `/v2/machines`. Every other path under /v2 is Go's 404. v2
 * auth (`/v2/auth`) is not served (404).
 */
import type http from "node:http";
import type { MemberRecord } from "../../server/cluster/membership.js";
import { goHttpError, goMethodNotAllowed } from "../../pkg/go-http-error.js";
import { KEYS_PREFIX, serveKeys, type V2KeysMember } from "./keys.js";

/** What the v2 API needs of the member (EtcdServer implements it). */
export interface V2Member extends V2KeysMember {
  readonly memberId: bigint;
  readonly leader: bigint;
  readonly isLeader: boolean;
  readonly membership: { list(): MemberRecord[]; get(id: bigint): MemberRecord | undefined; isRemoved(id: bigint): boolean };
  memberAdd(peerUrls: string[], isLearner: boolean): Promise<{ member: MemberRecord; members: MemberRecord[] }>;
  memberRemove(id: bigint): Promise<MemberRecord[]>;
  memberUpdate(id: bigint, peerUrls: string[]): Promise<MemberRecord[]>;
}

export interface V2HandlerOptions {
  /** The member's name (/v2/stats/self). */
  name: string;
  /** The largest request body read (form or JSON). */
  bodyBytesMax: number;
}

const MEMBERS_PREFIX = "/v2/members";

/**
 * A handler for every path under /v2/ (made when the member starts: /v2/stats/self reports that
 * time). Paths that are not clean are redirected first, as Go's ServeMux does.
 */
export function v2Handler(member: V2Member, options: V2HandlerOptions): (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void {
  const startTime = new Date().toISOString();
  let leaderSeen: bigint | undefined;
  let leaderSinceMs = Date.now();
  return (req, res, url) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(url.pathname);
    } catch {
      decoded = url.pathname;
    }
    const clean = goCleanPath(decoded);
    if (clean !== decoded && req.method !== "CONNECT") {
      // Go's ServeMux: a path that is not clean is redirected to its clean form.
      const location = encodeURI(clean) + url.search;
      res.statusCode = 301;
      res.setHeader("Location", location);
      if (req.method === "GET" || req.method === "HEAD") {
        res.setHeader("Content-Type", "text/html; charset=utf-8");
        res.end(`<a href="${htmlEscape(location)}">Moved Permanently</a>.\n\n`);
      } else res.end();
      return;
    }
    const p = url.pathname;
    const fail = (err: unknown): void => {
      if (!res.headersSent) httpError(res, 500, "Internal Server Error");
      else res.destroy(err as Error);
    };
    if (p === KEYS_PREFIX || p.startsWith(KEYS_PREFIX + "/")) {
      serveKeys(member, { bodyBytesMax: options.bodyBytesMax }, req, res, url).catch(fail);
      return;
    }
    if (p === MEMBERS_PREFIX || p.startsWith(MEMBERS_PREFIX + "/")) {
      serveMembers(member, options, req, res, p).catch(fail);
      return;
    }
    switch (p) {
      case "/v2/machines":
        if (!allowMethod(req, res, "GET", "HEAD")) return;
        res.setHeader("Content-Type", "text/plain; charset=utf-8");
        res.end(clientUrls(member).join(", "));
        return;
      case "/v2/stats/store":
        if (!allowMethod(req, res, "GET")) return;
        res.setHeader("Content-Type", "application/json");
        res.end(member.v2.statsJson());
        return;
      case "/v2/stats/self": {
        if (!allowMethod(req, res, "GET")) return;
        if (leaderSeen !== undefined && member.leader !== leaderSeen) leaderSinceMs = Date.now();
        leaderSeen = member.leader;
        res.setHeader("Content-Type", "application/json");
        res.end(JSON.stringify({
          name: options.name,
          id: member.memberId.toString(16),
          state: member.isLeader ? "StateLeader" : "StateFollower",
          startTime,
          leaderInfo: { leader: member.leader.toString(16), uptime: goDuration(Date.now() - leaderSinceMs), startTime: new Date(leaderSinceMs).toISOString() },
          recvAppendRequestCnt: 0,
          sendAppendRequestCnt: 0,
        }));
        return;
      }
      case "/v2/stats/leader": {
        if (!allowMethod(req, res, "GET")) return;
        if (!member.isLeader) {
          httpError(res, 403, "not current leader");
          return;
        }
        const followers: Record<string, unknown> = {};
        for (const m of member.membership.list()) {
          if (m.id === member.memberId) continue;
          followers[m.id.toString(16)] = {
            latency: { current: 0, average: 0, standardDeviation: 0, minimum: 0, maximum: 0 },
            counts: { fail: 0, success: 0 },
          };
        }
        res.setHeader("Content-Type", "application/json");
        res.end(JSON.stringify({ leader: member.memberId.toString(16), followers }));
        return;
      }
      default:
        goHttpError(res, 404, "404 page not found");
    }
  };
}

/** Go's http cleanPath: path.Clean, keeping a trailing slash. */
function goCleanPath(p: string): string {
  if (p === "") return "/";
  if (!p.startsWith("/")) p = "/" + p;
  const out: string[] = [];
  for (const c of p.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") out.pop();
    else out.push(c);
  }
  let np = "/" + out.join("/");
  if (p.endsWith("/") && np !== "/") np += "/";
  return np;
}

function htmlEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&#34;").replace(/'/g, "&#39;");
}

/** Go's time.Duration.String for a duration in milliseconds. */
function goDuration(ms: number): string {
  if (ms <= 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const sec = ((ms % 60_000) / 1000).toString();
  return (h > 0 ? `${h}h` : "") + (h > 0 || m > 0 ? `${m}m` : "") + `${sec}s`;
}

function clientUrls(member: V2Member): string[] {
  const urls: string[] = [];
  for (const m of member.membership.list()) urls.push(...m.clientUrls);
  return urls.sort();
}

/** Go's allowMethod: 405 with Allow listing the methods. */
function allowMethod(req: http.IncomingMessage, res: http.ServerResponse, ...methods: string[]): boolean {
  if (methods.includes(req.method ?? "")) return true;
  goMethodNotAllowed(res, methods.join(","));
  return false;
}

/** etcd's httptypes.HTTPError: `{"message":...}` (no newline). */
function httpError(res: http.ServerResponse, status: number, message: string): void {
  res.setHeader("Content-Type", "application/json");
  res.statusCode = status;
  res.end(JSON.stringify({ message }));
}

/** etcd's httptypes.Member: the ID in hex. */
function memberJson(m: MemberRecord): { id: string; name: string; peerURLs: string[]; clientURLs: string[] } {
  return { id: m.id.toString(16), name: m.name, peerURLs: [...m.peerUrls], clientURLs: [...m.clientUrls] };
}

function sortedMembers(member: V2Member): MemberRecord[] {
  return [...member.membership.list()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function readJson(req: http.IncomingMessage, res: http.ServerResponse, bytesMax: number): Promise<unknown> {
  const ctypeFull = req.headers["content-type"] ?? "";
  const semi = ctypeFull.indexOf(";");
  const ctype = semi === -1 ? ctypeFull : ctypeFull.slice(0, semi).trim().toLowerCase();
  if (ctype !== "application/json") {
    httpError(res, 415, `Bad Content-Type ${ctype}, accept application/json`);
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= bytesMax) chunks.push(c);
    });
    req.on("end", () => {
      if (size > bytesMax) {
        httpError(res, 400, "http: request body too large");
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) ?? {});
      } catch (err) {
        httpError(res, 400, (err as Error).message);
        resolve(undefined);
      }
    });
  });
}

/**
 * The `peerURLs` of a member add or update body, checked; undefined once an error has been
 * answered (a body readJson refused, or URLs etcd's checks refuse: 400 with their text).
 */
async function readPeerUrls(req: http.IncomingMessage, res: http.ServerResponse, bytesMax: number): Promise<string[] | undefined> {
  const body = (await readJson(req, res, bytesMax)) as { peerURLs?: unknown } | undefined;
  if (body === undefined) return undefined;
  const bad = checkPeerUrls(body.peerURLs);
  if (bad !== undefined) {
    httpError(res, 400, bad);
    return undefined;
  }
  return body.peerURLs as string[];
}

/** etcd's types.NewURLs checks on peer URLs; the error text, or undefined when they are fine. */
function checkPeerUrls(urls: unknown): string | undefined {
  if (!Array.isArray(urls) || urls.length === 0) return "no valid URLs given";
  for (const u of urls) {
    if (typeof u !== "string") return "json: cannot unmarshal into Go value of type string";
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      return `parse ${u}: invalid URI for request`;
    }
    if (!["http:", "https:", "unix:", "unixs:"].includes(parsed.protocol)) return `URL scheme must be http, https, unix, or unixs: ${u}`;
    if (parsed.port === "" && !/:\d+$/.test(parsed.host)) return `URL address does not have the form "host:port": ${u}`;
    if (parsed.pathname !== "" && parsed.pathname !== "/") return `URL must not contain a path: ${u}`;
  }
  return undefined;
}

function memberIdFrom(res: http.ServerResponse, p: string): bigint | undefined {
  const idStr = p.slice(MEMBERS_PREFIX.length).replace(/^\//, "");
  if (idStr === "") {
    goHttpError(res, 405, "Method Not Allowed");
    return undefined;
  }
  if (!/^[0-9a-fA-F]{1,16}$/.test(idStr)) {
    httpError(res, 404, `No such member: ${idStr}`);
    return undefined;
  }
  return BigInt("0x" + idStr);
}

function errCode(err: unknown): string | undefined {
  return (err as { code?: string }).code;
}

async function serveMembers(member: V2Member, options: V2HandlerOptions, req: http.IncomingMessage, res: http.ServerResponse, p: string): Promise<void> {
  if (!allowMethod(req, res, "GET", "POST", "DELETE", "PUT")) return;
  res.setHeader("X-Etcd-Cluster-ID", member.clusterId.toString(16));
  switch (req.method) {
    case "GET": {
      const sub = p.slice(MEMBERS_PREFIX.length).replace(/^\//, "");
      if (sub === "") {
        res.setHeader("Content-Type", "application/json");
        res.end(JSON.stringify({ members: sortedMembers(member).map(memberJson) }) + "\n");
      } else if (sub === "leader") {
        const lead = member.leader === 0n ? undefined : member.membership.get(member.leader);
        if (lead === undefined) {
          httpError(res, 503, "During election");
          return;
        }
        res.setHeader("Content-Type", "application/json");
        res.end(JSON.stringify(memberJson(lead)) + "\n");
      } else {
        httpError(res, 404, "Not found");
      }
      return;
    }
    case "POST": {
      const peerUrls = await readPeerUrls(req, res, options.bodyBytesMax);
      if (peerUrls === undefined) return;
      try {
        const { member: m } = await member.memberAdd(peerUrls, false);
        res.setHeader("Content-Type", "application/json");
        res.statusCode = 201;
        res.end(JSON.stringify({ id: m.id.toString(16), name: "", peerURLs: [...m.peerUrls], clientURLs: [] }) + "\n");
      } catch (err) {
        const code = errCode(err);
        if (code === "MemberExist") httpError(res, 409, "membership: ID exists");
        else if (code === "PeerURLExist") httpError(res, 409, "membership: peerURL exists");
        else httpError(res, 500, "Internal Server Error");
      }
      return;
    }
    case "DELETE": {
      const id = memberIdFrom(res, p);
      if (id === undefined) return;
      try {
        await member.memberRemove(id);
        res.statusCode = 204;
        res.end();
      } catch (err) {
        if (errCode(err) === "MemberNotFound" && member.membership.isRemoved(id)) httpError(res, 410, `Member permanently removed: ${id.toString(16)}`);
        else if (errCode(err) === "MemberNotFound") httpError(res, 404, `No such member: ${id.toString(16)}`);
        else httpError(res, 500, "Internal Server Error");
      }
      return;
    }
    case "PUT": {
      const id = memberIdFrom(res, p);
      if (id === undefined) return;
      const peerUrls = await readPeerUrls(req, res, options.bodyBytesMax);
      if (peerUrls === undefined) return;
      try {
        await member.memberUpdate(id, peerUrls);
        res.statusCode = 204;
        res.end();
      } catch (err) {
        const code = errCode(err);
        if (code === "PeerURLExist") httpError(res, 409, "membership: peerURL exists");
        else if (code === "MemberNotFound") httpError(res, 404, `No such member: ${id.toString(16)}`);
        else httpError(res, 500, "Internal Server Error");
      }
      return;
    }
  }
}
