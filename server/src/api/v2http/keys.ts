/**
 * etcd 3.4's v2 keys API (`/v2/keys`), served with --enable-v2: the form parsing, the events and
 * errors as etcd writes them (JSON bodies, status codes, the X-Etcd-Index, X-Raft-Index,
 * X-Raft-Term and X-Etcd-Cluster-ID headers) and long-polled watches.
 *
 * User keys live under "/1" of the v2 store (the membership's "/0" is not reachable from here);
 * keys in answers have that prefix trimmed. Writes (PUT, POST, DELETE) and quorum reads
 * (`quorum=true`, etcd's QGET) go through the log as v2 Requests; plain GETs and watches read
 * this member's store.
 */
import type http from "node:http";
import type { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";
import { goJsonStringify, type GoJsonValue } from "../../pkg/go-json.js";
import { V2Error, V2ErrorCode } from "../../v2store/errors.js";
import { goMethodNotAllowed } from "../../pkg/go-http-error.js";
import { externJson, type NodeExtern, type V2Event, type V2Store, type V2Watcher } from "../../v2store/v2-store.js";

/** What the keys API needs of the member (EtcdServer implements it). */
export interface V2KeysMember {
  readonly v2: V2Store;
  readonly clusterId: bigint;
  readonly term: number;
  readonly committed: number;
  /** A write or quorum read through the log; resolves with `{ value: V2Event }` or `{ error }`. */
  v2Request(req: Request): Promise<{ value?: unknown; error?: Error }>;
}

export const KEYS_PREFIX = "/v2/keys";
const STORE_KEYS_PREFIX = "/1";
/** Bytes a watch response may have queued for a slow client before the watch is dropped. */
const WATCH_BUFFER_BYTES_MAX = 4 * 1024 * 1024;
/** etcd's texts for the member's errors a v2 request can end with (cause of a 300). */
const SERVER_ERROR_TEXTS: Record<string, string> = {
  Timeout: "etcdserver: request timed out",
  NoLeader: "etcdserver: request timed out",
  ContextDeadline: "etcdserver: request timed out",
  ProposalDropped: "etcdserver: request timed out",
  TimeoutDueToLeaderFail: "etcdserver: request timed out, possibly due to previous leader failure",
  Stopped: "etcdserver: server stopped",
  RequestTooLarge: "etcdserver: request is too large",
};

/** Writes a v2 store error as etcd does: X-Etcd-Index, its status, `{"errorCode",...}\n`. */
export function writeV2Error(res: http.ServerResponse, e: V2Error): void {
  res.setHeader("X-Etcd-Index", String(e.index));
  res.setHeader("Content-Type", "application/json");
  res.statusCode = e.httpStatus;
  const cause = e.detail === "" ? undefined : e.detail;
  res.end(goJsonStringify({ errorCode: e.errorCode, message: e.errorMessage, cause, index: e.index }) + "\n");
}

function requestError(code: V2ErrorCode, cause: string): V2Error {
  return new V2Error(code, cause, 0);
}

/** Go's strconv.ParseBool. */
function parseGoBool(s: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(s)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(s)) return false;
  return undefined;
}

/** Go's strconv.ParseUint(s, 10, 64). */
function parseGoUint64(s: string): bigint | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const v = BigInt(s);
  return v < 2n ** 64n ? v : undefined;
}

/** Go's url.Values: every value of every key, body values before the query's. */
type Form = Map<string, string[]>;

/** Go's url.QueryUnescape; throws the text of Go's error for a bad escape. */
function queryUnescape(s: string): string {
  if (!s.includes("%") && !s.includes("+")) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === "%") {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error(`invalid URL escape ${JSON.stringify(s.slice(i, i + 3))}`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (ch === "+") bytes.push(0x20);
    else for (const b of Buffer.from(ch)) bytes.push(b);
  }
  return Buffer.from(bytes).toString("utf8");
}

/**
 * Go's url.ParseQuery into `form`: every pair is kept that parses; the first error (a bad escape,
 * a semicolon separator) is thrown after all are read, as ParseForm reports it.
 */
function parseInto(form: Form, text: string): void {
  let first: Error | undefined;
  for (const part of text.split("&")) {
    if (part === "") continue;
    if (part.includes(";")) {
      first ??= new Error("invalid semicolon separator in query");
      continue;
    }
    const eq = part.indexOf("=");
    try {
      const k = queryUnescape(eq === -1 ? part : part.slice(0, eq));
      const v = queryUnescape(eq === -1 ? "" : part.slice(eq + 1));
      const list = form.get(k);
      if (list === undefined) form.set(k, [v]);
      else list.push(v);
    } catch (err) {
      first ??= err as Error;
    }
  }
  if (first !== undefined) throw first;
}

interface ParsedKeyRequest {
  req: Request;
  noValueOnSuccess: boolean;
}

/** etcd's parseKeyRequest. @throws V2Error (209, 201, 202, 203, 211, 212). */
function parseKeyRequest(method: string, keyPath: string, form: Form, nowMs: number): ParsedKeyRequest {
  const first = (k: string): string | undefined => form.get(k)?.[0];
  const uint = (k: string, code: V2ErrorCode, text: string): bigint => {
    const v = first(k);
    if (v === undefined) return 0n;
    const n = parseGoUint64(v);
    if (n === undefined) throw requestError(code, text);
    return n;
  };
  const bool = (k: string, text = `invalid value for "${k}"`): boolean => {
    const v = first(k);
    if (v === undefined) return false;
    const b = parseGoBool(v);
    if (b === undefined) throw requestError(V2ErrorCode.InvalidField, text);
    return b;
  };
  const prevIndex = uint("prevIndex", V2ErrorCode.IndexNaN, `invalid value for "prevIndex"`);
  const waitIndex = uint("waitIndex", V2ErrorCode.IndexNaN, `invalid value for "waitIndex"`);
  const recursive = bool("recursive");
  const sorted = bool("sorted");
  const wait = bool("wait");
  const dir = bool("dir");
  const quorum = bool("quorum");
  const stream = bool("stream");
  if (wait && method !== "GET") throw requestError(V2ErrorCode.InvalidField, `"wait" can only be used with GET requests`);
  const prevValue = first("prevValue") ?? "";
  if (form.has("prevValue") && prevValue === "") throw requestError(V2ErrorCode.PrevValueRequired, `"prevValue" cannot be empty`);
  const noValueOnSuccess = bool("noValueOnSuccess");
  let ttl: bigint | undefined;
  if ((first("ttl") ?? "").length > 0) ttl = uint("ttl", V2ErrorCode.TtlNaN, `invalid value for "ttl"`);
  let prevExist: boolean | undefined;
  if (form.has("prevExist")) prevExist = bool("prevExist", "invalid value for prevExist");
  let refresh: boolean | undefined;
  if (form.has("refresh")) {
    refresh = bool("refresh", "invalid value for refresh");
    if (refresh) {
      if (form.has("value") && (first("value") ?? "") !== "") throw requestError(V2ErrorCode.RefreshValue, "A value was provided on a refresh");
      if (ttl === undefined) throw requestError(V2ErrorCode.RefreshTtlRequired, "No TTL value set");
    }
  }
  const req = {
    ID: 0n, Method: method, Path: keyPath, Val: first("value") ?? "", Dir: dir, PrevValue: prevValue, PrevIndex: prevIndex,
    PrevExist: prevExist, Expiration: ttl === undefined ? 0n : BigInt(nowMs) * 1_000_000n + ttl * 1_000_000_000n,
    Wait: wait, Since: waitIndex, Recursive: recursive, Sorted: sorted, Quorum: quorum, Time: 0n, Stream: stream, Refresh: refresh,
  } as Request;
  return { req, noValueOnSuccess };
}

/** Go's path.Join("/1", p). */
function storePath(urlPath: string): string {
  const out: string[] = [];
  for (const c of (STORE_KEYS_PREFIX + "/" + urlPath).split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") out.pop();
    else out.push(c);
  }
  return "/" + out.join("/");
}

function trimKey(key: string | undefined): string | undefined {
  return key === undefined ? undefined : key.startsWith(STORE_KEYS_PREFIX) ? key.slice(STORE_KEYS_PREFIX.length) : key;
}

function trimNode(n: NodeExtern | undefined): NodeExtern | undefined {
  if (n === undefined) return undefined;
  return { ...n, key: trimKey(n.key), nodes: n.nodes?.map((c) => trimNode(c)!) };
}

/**
 * An event as etcd writes it to clients, keys trimmed of the store prefix, with the newline. etcd
 * answers with a clone of the event that leaves out its refresh flag: never written here.
 */
function eventJson(e: V2Event, omitNodes = false): string {
  const node = omitNodes ? undefined : trimNode(e.node);
  const prevNode = omitNodes ? undefined : trimNode(e.prevNode);
  const doc: GoJsonValue = {
    action: e.action,
    node: node === undefined ? undefined : externJson(node),
    prevNode: prevNode === undefined ? undefined : externJson(prevNode),
  };
  return goJsonStringify(doc) + "\n";
}

function trimError(e: V2Error): V2Error {
  return e.detail.startsWith(STORE_KEYS_PREFIX) ? new V2Error(e.errorCode, e.detail.slice(STORE_KEYS_PREFIX.length), e.index) : e;
}

/** An error a v2 request ended with, as etcd answers it: the store's own, or 300 with the text. */
function asV2Error(err: unknown): V2Error {
  if (err instanceof V2Error) return trimError(err);
  const code = (err as { code?: string }).code;
  const text = code !== undefined && SERVER_ERROR_TEXTS[code] !== undefined ? SERVER_ERROR_TEXTS[code]! : String((err as Error).message ?? err);
  return new V2Error(V2ErrorCode.RaftInternal, text, 0);
}

function readBody(req: http.IncomingMessage, bytesMax: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > bytesMax) {
        reject(new Error("http: request body too large"));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export interface KeysHandlerOptions {
  /** The largest form body read (etcd: Go's 10 MB form limit). */
  bodyBytesMax: number;
}

/** Serves one request under /v2/keys. */
export async function serveKeys(member: V2KeysMember, options: KeysHandlerOptions, req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
  const method = req.method ?? "GET";
  if (!["HEAD", "GET", "PUT", "POST", "DELETE"].includes(method)) {
    goMethodNotAllowed(res, "HEAD,GET,PUT,POST,DELETE");
    return;
  }
  res.setHeader("X-Etcd-Cluster-ID", member.clusterId.toString(16));
  const form: Form = new Map();
  let parsed: ParsedKeyRequest;
  try {
    // Go's ParseForm: the body of a url-encoded PUT or POST first, then the query; a body of any
    // other type (or none given) is not read as a form.
    let formError: Error | undefined;
    if (method === "PUT" || method === "POST") {
      const ctype = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
      if (ctype === "application/x-www-form-urlencoded") {
        const body = await readBody(req, options.bodyBytesMax).catch(() => {
          throw requestError(V2ErrorCode.InvalidForm, "http: POST too large");
        });
        try {
          parseInto(form, body);
        } catch (err) {
          formError = err as Error;
        }
      }
    }
    try {
      parseInto(form, url.search.replace(/^\?/, ""));
    } catch (err) {
      formError ??= err as Error;
    }
    if (formError !== undefined) throw requestError(V2ErrorCode.InvalidForm, formError.message);
    let rawPath: string;
    try {
      rawPath = decodeURIComponent(url.pathname.slice(KEYS_PREFIX.length));
    } catch {
      throw requestError(V2ErrorCode.InvalidForm, "invalid URL escape");
    }
    parsed = parseKeyRequest(method, storePath(rawPath), form, Date.now());
  } catch (err) {
    writeV2Error(res, asV2Error(err));
    return;
  }
  const r = parsed.req;
  if (r.Method === "GET" && r.Quorum) r.Method = "QGET";
  try {
    switch (r.Method) {
      case "GET":
      case "HEAD":
        if (r.Wait && r.Method === "GET") {
          watch(member, r, res);
          return;
        }
        writeEvent(member, res, member.v2.get(r.Path!, r.Recursive, r.Sorted), false, method === "HEAD");
        return;
      default: {
        const result = await member.v2Request(r);
        if (result.error !== undefined) throw result.error;
        writeEvent(member, res, result.value as V2Event, parsed.noValueOnSuccess, false);
      }
    }
  } catch (err) {
    writeV2Error(res, asV2Error(err));
  }
}

function raftHeaders(member: V2KeysMember, res: http.ServerResponse): void {
  res.setHeader("X-Raft-Index", String(member.committed));
  res.setHeader("X-Raft-Term", String(member.term));
}

function writeEvent(member: V2KeysMember, res: http.ServerResponse, e: V2Event, noValueOnSuccess: boolean, head: boolean): void {
  res.setHeader("Content-Type", "application/json");
  res.setHeader("X-Etcd-Index", String(e.etcdIndex));
  raftHeaders(member, res);
  const created = e.action === "create" || (e.action === "set" && e.prevNode === undefined);
  res.statusCode = created ? 201 : 200;
  const omit = noValueOnSuccess && ["set", "compareAndSwap", "create", "update"].includes(e.action);
  res.end(head ? undefined : eventJson(e, omit));
}

/**
 * A long poll (`wait=true`): the headers at once (X-Etcd-Index: the store index when the watch
 * was made), then the first matching event, or every one with `stream=true`, until the client
 * goes away. A client that does not read is dropped past WATCH_BUFFER_BYTES_MAX.
 */
function watch(member: V2KeysMember, r: Request, res: http.ServerResponse): void {
  const early: V2Event[] = [];
  let open = false;
  let watcher: V2Watcher | undefined;
  const finish = (): void => {
    watcher?.remove();
    if (!res.writableEnded) res.end();
  };
  const send = (e: V2Event): boolean => {
    if (res.writableEnded) return false;
    res.write(eventJson(e));
    if (!r.Stream) {
      finish();
      return true;
    }
    return res.writableLength <= WATCH_BUFFER_BYTES_MAX;
  };
  watcher = member.v2.watch(r.Path!, r.Recursive ?? false, r.Stream ?? false, Number(r.Since ?? 0n), {
    event: (e) => (open ? send(e) : (early.push(e), true)),
    onRemoved: () => finish(),
  });
  res.setHeader("Content-Type", "application/json");
  res.setHeader("X-Etcd-Index", String(watcher.startIndex));
  raftHeaders(member, res);
  res.statusCode = 200;
  res.flushHeaders();
  open = true;
  for (const e of early) send(e);
  if (!r.Stream && early.length > 0) return;
  // The response closes when it ends or when the client goes away.
  res.on("close", () => watcher?.remove());
}
