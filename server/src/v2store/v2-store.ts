/**
 * etcd's v2 store: a tree of directories and key-value nodes under "/", each with the store index
 * that created it and the one that last modified it; the store's current index counts its
 * mutations (not raft entries). The member keeps the cluster's membership here ("/0/members",
 * "/0/removed_members", "/0/version"); the v2 keys API lives under "/1".
 *
 * Snapshot format (`save()` / `recover()`): the JSON etcd 3.4 writes as the data of a raft
 * snapshot, in Go's field order and escaping:
 *   {"Root":<node>,"WatcherHub":{"EventHistory":{"Queue":{"Events":[<event>|null × Capacity],
 *    "Size":n,"Front":i,"Back":j,"Capacity":c},"StartIndex":s,"LastIndex":l}},
 *    "CurrentIndex":n,"Stats":{<the 16 counters>},"CurrentVersion":2}
 *   <node> = {"Path","CreatedIndex","ModifiedIndex","ExpireTime" (Go time, "0001-01-01T00:00:00Z"
 *            when permanent),"Value","Children": {name: <node>} in byte order for a directory,
 *            null for a key-value node}
 *   <event> = {"action","node":<extern>,"prevNode"?:<extern>,"refresh"?:true}
 *   <extern> = {"key","value"? (present, even empty, for key-value nodes),"dir"?,"expiration"?,
 *              "ttl"?,"nodes"?,"modifiedIndex"?,"createdIndex"?} (absent when zero/false)
 *
 * TTL nodes expire only when told (`deleteExpiredKeys`, which the log's SYNC requests drive, as in
 * etcd); no timer here. Watchers (`watch`) are answered from the event history (etcd's ring of
 * the last 1000 events, which the snapshot carries) or by the next matching mutation; a refresh
 * (TTL renewed, value kept) is recorded in the history but wakes no watcher, as in etcd.
 */
import { goJsonString, goJsonStringify, goMapKeyCompare, type GoJsonValue } from "../pkg/go-json.js";
import { V2Error, V2ErrorCode } from "./errors.js";

/** Go's zero time.Time as encoding/json writes it: the expire time of a permanent node. */
export const PERMANENT_EXPIRE_TIME = "0001-01-01T00:00:00Z";
const EVENT_HISTORY_CAPACITY = 1000;
/** Expire times before this are treated as permanent (etcd's minExpireTime). */
const MIN_EXPIRE_MS = Date.UTC(2000, 0, 1);
const STORE_VERSION = 2;

/** What the store needs of time: only the TTL shown in events (`ttl`). */
export interface V2StoreClock {
  nowMs(): number;
}

export interface V2StoreOptions {
  /** Top-level directories that exist from the start and are read-only, like "/". Default: "/0", "/1". */
  namespaces?: string[];
}

export interface V2StoreDependencies {
  clock?: V2StoreClock;
}

/** A node as clients see it (etcd's NodeExtern); optional fields are absent when zero. */
export interface NodeExtern {
  key?: string;
  value?: string;
  dir?: boolean;
  expiration?: string;
  ttl?: number;
  nodes?: NodeExtern[];
  modifiedIndex?: number;
  createdIndex?: number;
}

export interface V2Event {
  action: string;
  node: NodeExtern;
  prevNode?: NodeExtern;
  /** A TTL refresh: recorded in the history, no watcher woken. */
  refresh?: boolean;
  /** The store index after the operation (not written to snapshots). */
  etcdIndex: number;
}

export interface TtlOptions {
  /** Unix time in nanoseconds; 0 or absent: permanent. */
  expireTimeNs?: bigint;
  /** Renew the TTL and keep the value (the key must exist). */
  refresh?: boolean;
}

/**
 * Receives a watcher's events, synchronously from the mutation that caused them. Returns false
 * when it cannot take more (its buffer is full): the watcher is then removed, as etcd removes a
 * watcher whose channel is full, and `onRemoved` tells the owner.
 */
export interface V2WatchSink {
  event(e: V2Event): boolean;
  onRemoved?(): void;
}

/** A registered watch. `startIndex` is the store index when it was made (X-Etcd-Index). */
export class V2Watcher {
  removed = false;
  constructor(
    readonly recursive: boolean,
    readonly stream: boolean,
    readonly sinceIndex: number,
    readonly startIndex: number,
    private readonly sink: V2WatchSink,
    private readonly detach: (w: V2Watcher) => void,
  ) {}

  /** Stops the watch (idempotent). */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    this.detach(this);
  }

  /** @internal etcd's watcher.notify: whether the event concerns this watcher (and was offered). */
  notify(e: V2Event, originalPath: boolean, deleted: boolean): boolean {
    if (!((this.recursive || originalPath || deleted) && (e.node.modifiedIndex ?? 0) >= this.sinceIndex)) return false;
    if (!this.sink.event(e)) {
      this.remove();
      this.sink.onRemoved?.();
    }
    return true;
  }

  /** @internal */
  deliver(e: V2Event): void {
    this.sink.event(e);
  }
}

const STAT_KEYS = [
  "getsSuccess", "getsFail", "setsSuccess", "setsFail", "deleteSuccess", "deleteFail",
  "updateSuccess", "updateFail", "createSuccess", "createFail", "compareAndSwapSuccess",
  "compareAndSwapFail", "compareAndDeleteSuccess", "compareAndDeleteFail", "expireCount", "watchers",
] as const;
type StatKey = (typeof STAT_KEYS)[number];

class V2Node {
  parent: V2Node | undefined;
  /** This node's saved JSON, kept until it or anything under it changes (see `touch`). */
  savedJson: string | undefined;
  constructor(
    public path: string,
    public createdIndex: number,
    public modifiedIndex: number,
    public expireTime: string,
    public value: string,
    public children: Map<string, V2Node> | null,
  ) {}

  get isDir(): boolean {
    return this.children !== null;
  }

  get name(): string {
    return this.path.slice(this.path.lastIndexOf("/") + 1);
  }

  get isHidden(): boolean {
    return this.name.startsWith("_");
  }

  get isPermanent(): boolean {
    return this.expireTime === PERMANENT_EXPIRE_TIME;
  }

  detach(): void {
    if (this.parent !== undefined && this.parent.children!.get(this.name) === this) {
      this.parent.children!.delete(this.name);
      this.parent.touch();
    }
  }

  /** Drops the saved JSON of this node and of every directory above it. */
  touch(): void {
    for (let n: V2Node | undefined = this; n !== undefined && n.savedJson !== undefined; n = n.parent) n.savedJson = undefined;
  }
}

const CLEAN_PATH = /^(?:\/[^/]+)+$/;
const DOT_COMPONENT = /\/\.\.?(?:\/|$)/;

/** path.Clean(path.Join("/", p)) in Go: absolute, no empty, "." or ".." components. */
export function cleanPath(p: string): string {
  // Already clean (the common case): absolute, and no empty, "." or ".." component.
  if (CLEAN_PATH.test(p) && !DOT_COMPONENT.test(p)) return p;
  const out: string[] = [];
  for (const c of p.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") out.pop();
    else out.push(c);
  }
  return "/" + out.join("/");
}

function splitPath(p: string): { dir: string; name: string } {
  const i = p.lastIndexOf("/");
  return { dir: p.slice(0, i + 1), name: p.slice(i + 1) };
}

/** Go's RFC3339Nano for a Unix time in nanoseconds, in UTC. */
export function formatGoTime(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const base = new Date(ms).toISOString().slice(0, 19);
  const frac = (((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return base + (frac === "" ? "" : "." + frac) + "Z";
}

/** A Go RFC 3339 time (nanosecond precision, any offset) as Unix nanoseconds; undefined when unreadable. */
export function parseGoTimeNs(s: string): bigint | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(s);
  if (m === null) return undefined;
  const ms = Date.parse(m[1]! + (m[3] === "Z" ? "Z" : m[3]!));
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? "").padEnd(9, "0") || "0");
}

function parseGoTimeMs(s: string): number {
  return Date.parse(s);
}

/** The constant pieces of a saved store (see `save`). */
const SAVE_ROOT_OPEN = Buffer.from(`{"Root":`);
const SAVE_EVENTS_OPEN = Buffer.from(`,"WatcherHub":{"EventHistory":{"Queue":{"Events":[`);
const SAVE_COMMA = Buffer.from(",");
const SAVE_NULL = Buffer.from("null");
/** History slots per kept block of saved bytes. */
const SAVE_BLOCK_SLOTS = 32;

export class V2Store {
  private root: V2Node;
  private currentIndex = 0;
  private currentVersion = STORE_VERSION;
  private stats: Record<StatKey, number>;
  private readonly readOnly: Set<string>;
  private readonly clock: V2StoreClock;
  private history: { events: (GoJsonValue | null)[]; size: number; front: number; back: number; capacity: number; startIndex: number; lastIndex: number };
  /** Watchers by the path they watch. */
  private readonly watchers = new Map<string, Set<V2Watcher>>();
  private watcherCount = 0;
  /** The JSON of each history slot, filled by `save` (events never change once recorded). */
  private eventJson: (Buffer | undefined)[] = [];
  /** Saved bytes of blocks of history slots (see saveEventBlock), dropped when a slot changes. */
  private eventBlocks: (Buffer | undefined)[] = [];
  /** The root's JSON and its bytes as `save` last encoded them. */
  private rootSaved: { json: string; bytes: Buffer } | undefined;
  /** Nodes given a TTL (a superset: removed or made permanent ones are pruned when met). */
  private ttlNodes = new Set<V2Node>();

  constructor(options: V2StoreOptions = {}, deps: V2StoreDependencies = {}) {
    const namespaces = options.namespaces ?? ["/0", "/1"];
    this.clock = deps.clock ?? { nowMs: () => Date.now() };
    this.readOnly = new Set(["/", ...namespaces]);
    this.root = new V2Node("/", 0, 0, PERMANENT_EXPIRE_TIME, "", new Map());
    for (const ns of namespaces) this.addChild(this.root, new V2Node(ns, 0, 0, PERMANENT_EXPIRE_TIME, "", new Map()));
    this.stats = Object.fromEntries(STAT_KEYS.map((k) => [k, 0])) as Record<StatKey, number>;
    this.history = this.emptyHistory(EVENT_HISTORY_CAPACITY);
  }

  /** The store's current index: the number of mutations so far (restored by `recover`). */
  get index(): number {
    return this.currentIndex;
  }

  /** @throws V2Error KeyNotFound, NotDir. */
  get(nodePath: string, recursive = false, sorted = false): V2Event {
    try {
      const n = this.internalGet(nodePath);
      const node = this.extern(n, recursive, sorted, true);
      node.key = nodePath;
      this.stats.getsSuccess++;
      return { action: "get", node, etcdIndex: this.currentIndex };
    } catch (e) {
      this.stats.getsFail++;
      throw e;
    }
  }

  /**
   * Creates a node (a directory when `dir`), with the directories above it; `unique` appends a
   * name made of the next index (POST). @throws V2Error NodeExist, NotDir, RootReadOnly.
   */
  create(nodePath: string, dir: boolean, value: string, unique = false, ttl: TtlOptions = {}): V2Event {
    return this.counted("create", () => this.internalCreate(nodePath, dir, value, unique, false, ttl, "create"));
  }

  /** Creates or replaces a node (a directory is not replaced). @throws V2Error NotFile, NotDir, RootReadOnly. */
  set(nodePath: string, dir: boolean, value: string, ttl: TtlOptions = {}): V2Event {
    return this.counted("sets", () => {
      const prev = this.lookup(nodePath);
      if (ttl.refresh) {
        if (prev === undefined) this.internalGet(nodePath); // throws KeyNotFound
        value = prev!.value;
      }
      const prevNode = prev === undefined ? undefined : this.extern(prev, false, false, true);
      if (prevNode !== undefined) prevNode.key = nodePath;
      const e = this.internalCreate(nodePath, dir, value, false, true, ttl, "set");
      if (prevNode !== undefined) e.prevNode = prevNode;
      if (ttl.refresh) e.refresh = true;
      this.record(e);
      return e;
    }, false);
  }

  /** Replaces a key's value (a directory's only when empty) and TTL. @throws V2Error KeyNotFound, NotFile, RootReadOnly. */
  update(nodePath: string, value: string, ttl: TtlOptions = {}): V2Event {
    return this.counted("update", () => {
      nodePath = cleanPath(nodePath);
      this.checkWritable(nodePath);
      const n = this.internalGet(nodePath);
      if (n.isDir && value.length !== 0) throw new V2Error(V2ErrorCode.NotFile, nodePath, this.currentIndex);
      if (ttl.refresh) value = n.value;
      const next = this.currentIndex + 1;
      const prevNode = this.extern(n, false, false, false);
      if (!n.isDir) {
        n.value = value;
        n.modifiedIndex = next;
        n.touch();
      }
      this.setExpireTime(n, ttl);
      const node: NodeExtern = { key: nodePath, value: n.isDir ? undefined : value, dir: n.isDir || undefined, ...this.ttlOf(n), modifiedIndex: next, createdIndex: n.createdIndex };
      this.currentIndex = next;
      return { action: "update", node, prevNode, etcdIndex: next, refresh: ttl.refresh || undefined };
    });
  }

  /** Replaces a key's value if it matches (an empty prevValue or zero prevIndex is not compared). @throws V2Error TestFailed, KeyNotFound, NotFile, RootReadOnly. */
  compareAndSwap(nodePath: string, prevValue: string, prevIndex: number, value: string, ttl: TtlOptions = {}): V2Event {
    return this.counted("compareAndSwap", () => {
      nodePath = cleanPath(nodePath);
      if (this.readOnly.has(nodePath)) throw new V2Error(V2ErrorCode.RootReadOnly, "/", this.currentIndex);
      const n = this.internalGet(nodePath);
      if (n.isDir) throw new V2Error(V2ErrorCode.NotFile, nodePath, this.currentIndex);
      this.compare(n, prevValue, prevIndex);
      if (ttl.refresh) value = n.value;
      this.currentIndex++;
      const prevNode = this.extern(n, false, false, false);
      n.value = value;
      n.modifiedIndex = this.currentIndex;
      n.touch();
      this.setExpireTime(n, ttl);
      const node: NodeExtern = { key: nodePath, value, ...this.ttlOf(n), modifiedIndex: this.currentIndex, createdIndex: n.createdIndex };
      return { action: "compareAndSwap", node, prevNode, etcdIndex: this.currentIndex, refresh: ttl.refresh || undefined };
    });
  }

  /** Deletes a key, or a directory when `dir` (non-empty only when `recursive`). @throws V2Error KeyNotFound, NotFile, DirNotEmpty, RootReadOnly. */
  delete(nodePath: string, dir = false, recursive = false): V2Event {
    return this.counted("delete", () => {
      nodePath = cleanPath(nodePath);
      if (this.readOnly.has(nodePath)) throw new V2Error(V2ErrorCode.RootReadOnly, "/", this.currentIndex);
      if (recursive) dir = true;
      const n = this.internalGet(nodePath);
      const next = this.currentIndex + 1;
      const prevNode = this.extern(n, false, false, false);
      this.remove(n, dir, recursive);
      this.currentIndex = next;
      const e: V2Event = { action: "delete", node: { key: nodePath, dir: n.isDir || undefined, modifiedIndex: next, createdIndex: n.createdIndex }, prevNode, etcdIndex: next };
      for (const p of subtreePaths(n)) this.notifyWatchers(e, p, true);
      return e;
    });
  }

  /** Deletes a key if it matches. @throws V2Error TestFailed, KeyNotFound, NotFile. */
  compareAndDelete(nodePath: string, prevValue: string, prevIndex: number): V2Event {
    return this.counted("compareAndDelete", () => {
      nodePath = cleanPath(nodePath);
      const n = this.internalGet(nodePath);
      if (n.isDir) throw new V2Error(V2ErrorCode.NotFile, nodePath, this.currentIndex);
      this.compare(n, prevValue, prevIndex);
      this.currentIndex++;
      const prevNode = this.extern(n, false, false, false);
      this.remove(n, false, false);
      const e: V2Event = { action: "compareAndDelete", node: { key: nodePath, modifiedIndex: this.currentIndex, createdIndex: n.createdIndex }, prevNode, etcdIndex: this.currentIndex };
      this.notifyWatchers(e, nodePath, true);
      return e;
    });
  }

  /**
   * Expires every node whose expire time is at or before `cutoffNs` (Unix nanoseconds), earliest
   * first (etcd's DeleteExpiredKeys, applied for a SYNC request): each one is removed with what
   * is under it, counts one index and records an "expire" event.
   */
  deleteExpiredKeys(cutoffNs: bigint): void {
    const due: { n: V2Node; at: bigint }[] = [];
    for (const n of this.liveTtlNodes()) {
      const at = parseGoTimeNs(n.expireTime);
      if (at !== undefined && at <= cutoffNs) due.push({ n, at });
    }
    due.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    for (const { n } of due) {
      if (!this.attached(n)) continue; // went with an expired directory above it
      this.currentIndex++;
      const prevNode = this.extern(n, false, false, false);
      n.detach();
      this.stats.expireCount++;
      const e: V2Event = { action: "expire", node: { key: n.path, dir: n.isDir || undefined, modifiedIndex: this.currentIndex, createdIndex: n.createdIndex }, prevNode, etcdIndex: this.currentIndex };
      for (const p of subtreePaths(n)) this.notifyWatchers(e, p, true);
      this.record(e);
    }
  }

  /** Whether any node has a TTL (the leader proposes SYNC requests only then, as etcd). */
  hasTtlKeys(): boolean {
    return this.liveTtlNodes().length > 0;
  }

  /** The nodes in the tree with a TTL; prunes the rest from `ttlNodes`. */
  private liveTtlNodes(): V2Node[] {
    const live: V2Node[] = [];
    for (const n of this.ttlNodes) {
      if (n.isPermanent || !this.attached(n)) this.ttlNodes.delete(n);
      else live.push(n);
    }
    return live;
  }

  /**
   * Watches `key` (and what is under it when `recursive`) for the first event at or after
   * `sinceIndex` (0: the next one). An event already in the history is delivered at once (with
   * the current index as its etcdIndex) and the watcher is not registered; otherwise it waits for
   * the next matching mutation, and a stream watcher stays for every one after it.
   * @throws V2Error EventIndexCleared when `sinceIndex` is older than the history's first event.
   */
  watch(key: string, recursive: boolean, stream: boolean, sinceIndex: number, sink: V2WatchSink): V2Watcher {
    key = cleanPath(key);
    if (sinceIndex === 0) sinceIndex = this.currentIndex + 1;
    const storeIndex = this.currentIndex;
    const found = this.scanHistory(key, recursive, sinceIndex, storeIndex);
    const w = new V2Watcher(recursive, stream, sinceIndex, storeIndex, sink, (x) => this.detachWatcher(key, x));
    if (found !== undefined) {
      w.removed = true;
      w.deliver({ ...found, etcdIndex: storeIndex });
      return w;
    }
    let set = this.watchers.get(key);
    if (set === undefined) this.watchers.set(key, (set = new Set()));
    set.add(w);
    this.watcherCount++;
    return w;
  }

  /** The store's counters as etcd's /v2/stats/store writes them (Go field order). */
  statsJson(): string {
    return JSON.stringify({ ...this.stats, watchers: this.watcherCount });
  }

  /** The store as etcd 3.4's `Save()` writes it (format above). */
  save(): Buffer {
    // Assembled from bytes kept between saves: each history slot's JSON (events never change once
    // recorded) and the root's (its nodes keep theirs until they change), so a save after one
    // change encodes that change and copies the rest, where building one string of the whole
    // store and encoding it cost a v2 write about 2 ms with a full history.
    const h = this.history;
    const parts: Buffer[] = [SAVE_ROOT_OPEN, this.savedRoot(), SAVE_EVENTS_OPEN];
    for (let b = 0; b * SAVE_BLOCK_SLOTS < h.events.length; b++) parts.push((this.eventBlocks[b] ??= this.saveEventBlock(b)));
    parts.push(
      Buffer.from(
        `],"Size":${h.size},"Front":${h.front},"Back":${h.back},"Capacity":${h.capacity}},"StartIndex":${h.startIndex},"LastIndex":${h.lastIndex}}},` +
          `"CurrentIndex":${this.currentIndex},"Stats":${goJsonStringify({ ...this.stats })},"CurrentVersion":${this.currentVersion}}`,
      ),
    );
    return Buffer.concat(parts);
  }

  /** History slots [b·SAVE_BLOCK_SLOTS, …) as saved, each preceded by a comma but the first of all. */
  private saveEventBlock(b: number): Buffer {
    const h = this.history;
    const parts: Buffer[] = [];
    const end = Math.min(h.events.length, (b + 1) * SAVE_BLOCK_SLOTS);
    for (let i = b * SAVE_BLOCK_SLOTS; i < end; i++) {
      if (i > 0) parts.push(SAVE_COMMA);
      const e = h.events[i];
      parts.push(e === null || e === undefined ? SAVE_NULL : (this.eventJson[i] ??= Buffer.from(goJsonStringify(e))));
    }
    return Buffer.concat(parts);
  }

  /** The root's saved JSON as bytes, encoded again only when it changed. */
  private savedRoot(): Buffer {
    const json = this.saveNode(this.root);
    if (this.rootSaved === undefined || this.rootSaved.json !== json) this.rootSaved = { json, bytes: Buffer.from(json) };
    return this.rootSaved.bytes;
  }

  /**
   * Replaces the store's contents with a saved one (etcd 3.4's `Recovery`): what the JSON holds
   * replaces, what it lacks keeps its value. @throws SyntaxError or V2StoreFormatError on data
   * that is not a saved store; the store is then unchanged.
   */
  recover(json: Uint8Array | string): void {
    const doc = JSON.parse(typeof json === "string" ? json : Buffer.from(json).toString("utf8")) as Record<string, unknown>;
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new V2StoreFormatError("not a JSON object");
    const root = doc.Root === undefined ? this.root : this.loadNode(doc.Root, undefined);
    let history = this.history;
    const hub = doc.WatcherHub as Record<string, unknown> | undefined;
    if (hub !== undefined && hub !== null) {
      const eh = hub.EventHistory as Record<string, unknown> | undefined;
      if (eh !== undefined && eh !== null) {
        const q = (eh.Queue ?? {}) as Record<string, unknown>;
        const events = Array.isArray(q.Events) ? (q.Events as GoJsonValue[]) : history.events;
        history = {
          events,
          size: num(q.Size, history.size),
          front: num(q.Front, history.front),
          back: num(q.Back, history.back),
          capacity: num(q.Capacity, history.capacity),
          startIndex: num(eh.StartIndex, history.startIndex),
          lastIndex: num(eh.LastIndex, history.lastIndex),
        };
      }
    }
    const stats = { ...this.stats };
    if (doc.Stats !== null && typeof doc.Stats === "object") {
      for (const k of STAT_KEYS) stats[k] = num((doc.Stats as Record<string, unknown>)[k], stats[k]);
    }
    this.root = root;
    this.eventJson = [];
    this.eventBlocks = [];
    this.ttlNodes = new Set();
    const visit = (n: V2Node): void => {
      if (!n.isPermanent) this.ttlNodes.add(n);
      if (n.children !== null) for (const c of n.children.values()) visit(c);
    };
    visit(root);
    this.history = history;
    this.stats = stats;
    this.currentIndex = num(doc.CurrentIndex, this.currentIndex);
    this.currentVersion = num(doc.CurrentVersion, this.currentVersion);
  }

  // ---- internals ----

  private emptyHistory(capacity: number): V2Store["history"] {
    return { events: new Array<GoJsonValue | null>(capacity).fill(null), size: 0, front: 0, back: 0, capacity, startIndex: 0, lastIndex: 0 };
  }

  /** Runs a mutation, counts it in the stats and records its event in the history. */
  private counted(stat: "create" | "sets" | "update" | "compareAndSwap" | "delete" | "compareAndDelete", op: () => V2Event, record = true): V2Event {
    const ok = (stat === "sets" ? "setsSuccess" : stat + "Success") as StatKey;
    const fail = (stat === "sets" ? "setsFail" : stat + "Fail") as StatKey;
    try {
      const e = op();
      if (record) this.record(e);
      this.stats[ok]++;
      return e;
    } catch (e) {
      this.stats[fail]++;
      throw e;
    }
  }

  private detachWatcher(key: string, w: V2Watcher): void {
    const set = this.watchers.get(key);
    if (set === undefined || !set.delete(w)) return;
    this.watcherCount--;
    if (set.size === 0) this.watchers.delete(key);
  }

  /** etcd's watcherHub.notifyWatchers: the watchers of `nodePath` that `e` concerns. */
  private notifyWatchers(e: V2Event, nodePath: string, deleted: boolean): void {
    const set = this.watchers.get(nodePath);
    if (set === undefined) return;
    for (const w of [...set]) {
      if (w.removed) continue;
      const originalPath = e.node.key === nodePath;
      if ((originalPath || !isHiddenFrom(nodePath, e.node.key ?? "")) && w.notify(e, originalPath, deleted) && !w.stream) w.remove();
    }
  }

  /** etcd's EventHistory.scan: the first event at or after `index` that a watch of `key` sees. */
  private scanHistory(key: string, recursive: boolean, index: number, storeIndex: number): V2Event | undefined {
    const h = this.history;
    if (index < h.startIndex) {
      throw new V2Error(V2ErrorCode.EventIndexCleared, `the requested history has been cleared [${h.startIndex}/${index}]`, storeIndex);
    }
    if (index > h.lastIndex || h.size === 0) return undefined;
    let i = (h.front + (index - h.startIndex)) % h.capacity;
    const prefix = key.endsWith("/") ? key : key + "/";
    for (;;) {
      const e = h.events[i] as { action: string; node: NodeExtern; prevNode?: NodeExtern; refresh?: boolean } | null;
      if (e !== null && !e.refresh) {
        const k = e.node.key ?? "";
        let ok = k === key || (recursive && k.startsWith(prefix));
        if ((e.action === "delete" || e.action === "expire") && e.prevNode?.dir === true) ok = ok || key.startsWith(e.prevNode.key ?? "");
        if (ok) return { action: e.action, node: e.node, prevNode: e.prevNode, etcdIndex: storeIndex };
      }
      i = (i + 1) % h.capacity;
      if (i === h.back) return undefined;
    }
  }

  /** Adds `e` to the history and, unless it is a refresh, wakes the watchers on every path above it. */
  private record(e: V2Event): void {
    this.addToHistory(e);
    if (e.refresh) return;
    const key = e.node.key ?? "/";
    let curr = "/";
    this.notifyWatchers(e, curr, false);
    for (const seg of key.split("/")) {
      if (seg === "") continue;
      curr = cleanPath(curr + "/" + seg);
      this.notifyWatchers(e, curr, false);
    }
  }

  private addToHistory(e: V2Event): void {
    const h = this.history;
    const json: GoJsonValue = { action: e.action, node: externJson(e.node), prevNode: e.prevNode === undefined ? undefined : externJson(e.prevNode), refresh: e.refresh || undefined };
    h.events[h.back] = json;
    this.eventJson[h.back] = undefined;
    this.eventBlocks[Math.floor(h.back / SAVE_BLOCK_SLOTS)] = undefined;
    h.back = (h.back + 1) % h.capacity;
    if (h.size === h.capacity) h.front = (h.front + 1) % h.capacity;
    else h.size++;
    h.lastIndex = e.node.modifiedIndex ?? 0;
    const front = h.events[h.front] as { node?: { modifiedIndex?: number } } | null;
    h.startIndex = front?.node?.modifiedIndex ?? 0;
  }

  private attached(n: V2Node): boolean {
    let c: V2Node = n;
    while (c.parent !== undefined) {
      if (c.parent.children!.get(c.name) !== c) return false;
      c = c.parent;
    }
    return c === this.root;
  }

  private checkWritable(p: string): void {
    if (this.readOnly.has(p)) throw new V2Error(V2ErrorCode.RootReadOnly, "/", this.currentIndex);
  }

  private internalCreate(nodePath: string, dir: boolean, value: string, unique: boolean, replace: boolean, ttl: TtlOptions, action: string): V2Event {
    const curr = this.currentIndex;
    const next = curr + 1;
    if (unique) nodePath += "/" + String(next).padStart(20, "0");
    nodePath = cleanPath(nodePath);
    this.checkWritable(nodePath);
    const expireTime = this.expireTimeOf(ttl);
    const { dir: dirName, name } = splitPath(nodePath);
    const d = this.walk(dirName, (parent, component) => {
      const child = parent.children!.get(component);
      if (child !== undefined) {
        if (child.isDir) return child;
        throw new V2Error(V2ErrorCode.NotDir, child.path, curr);
      }
      const made = new V2Node(cleanPath(parent.path + "/" + component), next, next, PERMANENT_EXPIRE_TIME, "", new Map());
      this.addChild(parent, made);
      return made;
    });
    const node: NodeExtern = { key: nodePath, modifiedIndex: next, createdIndex: next };
    let prevNode: NodeExtern | undefined;
    const existing = d.children!.get(name);
    if (existing !== undefined) {
      if (!replace) throw new V2Error(V2ErrorCode.NodeExist, nodePath, curr);
      if (existing.isDir) throw new V2Error(V2ErrorCode.NotFile, nodePath, curr);
      prevNode = this.extern(existing, false, false, false);
      existing.detach();
    }
    const n = dir ? new V2Node(nodePath, next, next, expireTime, "", new Map()) : new V2Node(nodePath, next, next, expireTime, value, null);
    if (dir) node.dir = true;
    else node.value = value;
    this.addChild(d, n);
    if (!n.isPermanent) {
      this.ttlNodes.add(n);
      Object.assign(node, this.ttlOf(n));
    }
    this.currentIndex = next;
    return { action, node, prevNode, etcdIndex: next };
  }

  /** @throws V2Error KeyNotFound, NotDir. */
  private internalGet(nodePath: string): V2Node {
    return this.walk(cleanPath(nodePath), (parent, name) => {
      const child = this.childOf(parent, name);
      if (child !== undefined) return child;
      throw new V2Error(V2ErrorCode.KeyNotFound, cleanPath(parent.path + "/" + name), this.currentIndex);
    });
  }

  /**
   * The node at `nodePath`, or undefined when a component is missing (no error object: a set of a
   * new key looks first). @throws V2Error NotDir when a component is a file.
   */
  private lookup(nodePath: string): V2Node | undefined {
    return this.walk(cleanPath(nodePath), (parent, name) => this.childOf(parent, name));
  }

  /** `parent`'s child `name`, if any. @throws V2Error NotDir when `parent` is a file. */
  private childOf(parent: V2Node, name: string): V2Node | undefined {
    if (!parent.isDir) throw new V2Error(V2ErrorCode.NotDir, parent.path, this.currentIndex);
    return parent.children!.get(name);
  }

  /**
   * Walks the components of `p` from the root; stops at the first empty component (as etcd), or
   * with undefined where `step` finds no node.
   */
  private walk<R extends V2Node | undefined>(p: string, step: (parent: V2Node, component: string) => R): V2Node | R {
    const components = p.split("/");
    let curr = this.root;
    for (let i = 1; i < components.length; i++) {
      if (components[i] === "") return curr;
      const next = step(curr, components[i]!);
      if (next === undefined) return next;
      curr = next;
    }
    return curr;
  }

  private addChild(parent: V2Node, child: V2Node): void {
    child.parent = parent;
    parent.children!.set(child.name, child);
    parent.touch();
  }

  private remove(n: V2Node, dir: boolean, recursive: boolean): void {
    if (!n.isDir) {
      n.detach();
      return;
    }
    if (!dir) throw new V2Error(V2ErrorCode.NotFile, n.path, this.currentIndex);
    if (n.children!.size !== 0 && !recursive) throw new V2Error(V2ErrorCode.DirNotEmpty, n.path, this.currentIndex);
    n.detach();
  }

  private compare(n: V2Node, prevValue: string, prevIndex: number): void {
    const indexMatch = prevIndex === 0 || n.modifiedIndex === prevIndex;
    const valueMatch = prevValue === "" || n.value === prevValue;
    if (indexMatch && valueMatch) return;
    let cause: string;
    if (indexMatch) cause = `[${prevValue} != ${n.value}]`;
    else if (valueMatch) cause = `[${prevIndex} != ${n.modifiedIndex}]`;
    else cause = `[${prevValue} != ${n.value}] [${prevIndex} != ${n.modifiedIndex}]`;
    throw new V2Error(V2ErrorCode.TestFailed, cause, this.currentIndex);
  }

  private expireTimeOf(ttl: TtlOptions): string {
    const ns = ttl.expireTimeNs ?? 0n;
    if (ns === 0n || Number(ns / 1_000_000n) < MIN_EXPIRE_MS) return PERMANENT_EXPIRE_TIME;
    return formatGoTime(ns);
  }

  private setExpireTime(n: V2Node, ttl: TtlOptions): void {
    n.expireTime = this.expireTimeOf(ttl);
    n.touch();
    if (!n.isPermanent) this.ttlNodes.add(n);
  }

  private ttlOf(n: V2Node): { expiration?: string; ttl?: number } {
    if (n.isPermanent) return {};
    const leftMs = parseGoTimeMs(n.expireTime) - this.clock.nowMs();
    return { expiration: n.expireTime, ttl: Math.ceil(leftMs / 1000) || undefined };
  }

  /** etcd's node Repr / loadInternalNode: hidden children left out of listings. */
  private extern(n: V2Node, recursive: boolean, sorted: boolean, listTop: boolean): NodeExtern {
    const out: NodeExtern = { key: n.path };
    if (n.isDir) {
      out.dir = true;
      if (recursive || listTop) {
        const nodes: NodeExtern[] = [];
        for (const c of n.children!.values()) if (!c.isHidden) nodes.push(this.extern(c, recursive, sorted, false));
        if (sorted) nodes.sort((a, b) => goMapKeyCompare(a.key ?? "", b.key ?? ""));
        out.nodes = nodes;
      }
    } else {
      out.value = n.value;
    }
    Object.assign(out, this.ttlOf(n));
    out.modifiedIndex = n.modifiedIndex;
    out.createdIndex = n.createdIndex;
    return out;
  }

  /** A node's saved JSON (Go's field order, children in byte order), cached on the node. */
  private saveNode(n: V2Node): string {
    if (n.savedJson !== undefined) return n.savedJson;
    let children = "null";
    if (n.children !== null) {
      const parts = [...n.children.keys()].sort(goMapKeyCompare).map((name) => goJsonString(name) + ":" + this.saveNode(n.children!.get(name)!));
      children = "{" + parts.join(",") + "}";
    }
    n.savedJson =
      `{"Path":${goJsonString(n.path)},"CreatedIndex":${n.createdIndex},"ModifiedIndex":${n.modifiedIndex},` +
      `"ExpireTime":${goJsonString(n.expireTime)},"Value":${goJsonString(n.value)},"Children":${children}}`;
    return n.savedJson;
  }

  private loadNode(raw: unknown, parent: V2Node | undefined): V2Node {
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new V2StoreFormatError("a node is not an object");
    const r = raw as Record<string, unknown>;
    const children = r.Children;
    const n = new V2Node(
      typeof r.Path === "string" ? r.Path : "",
      num(r.CreatedIndex, 0),
      num(r.ModifiedIndex, 0),
      typeof r.ExpireTime === "string" ? r.ExpireTime : PERMANENT_EXPIRE_TIME,
      typeof r.Value === "string" ? r.Value : "",
      children === null || children === undefined ? null : new Map(),
    );
    n.parent = parent;
    if (n.children !== null) {
      if (typeof children !== "object" || Array.isArray(children)) throw new V2StoreFormatError(`children of ${n.path} are not an object`);
      for (const [name, c] of Object.entries(children as Record<string, unknown>)) n.children.set(name, this.loadNode(c, n));
    }
    return n;
  }
}

/** The data given to `recover` is JSON but not a saved store. */
export class V2StoreFormatError extends Error {
  readonly code = "V2STORE_FORMAT";
  constructor(reason: string) {
    super(`v2store: bad snapshot: ${reason}`);
  }
}

/** Every path in the subtree of `n`, children before their directory (what a removal notifies). */
function subtreePaths(n: V2Node): string[] {
  const out: string[] = [];
  const visit = (x: V2Node): void => {
    if (x.children !== null) for (const c of x.children.values()) visit(c);
    out.push(x.path);
  };
  visit(n);
  return out;
}

/** etcd's isHidden: whether `keyPath` is hidden from a watch of `watchPath` (a "_" component below it). */
function isHiddenFrom(watchPath: string, keyPath: string): boolean {
  if (watchPath.length > keyPath.length) return false;
  return cleanPath("/" + keyPath.slice(watchPath.length)).includes("/_");
}

function num(v: unknown, fallback: number): number {
  return typeof v === "number" && Number.isFinite(v) ? v : fallback;
}

/** NodeExtern as Go writes it: field order key, value, dir, expiration, ttl, nodes, modifiedIndex, createdIndex; zero values left out. */
export function externJson(n: NodeExtern): GoJsonValue {
  return {
    key: n.key || undefined,
    value: n.value,
    dir: n.dir || undefined,
    expiration: n.expiration,
    ttl: n.ttl || undefined,
    nodes: n.nodes !== undefined && n.nodes.length > 0 ? n.nodes.map(externJson) : undefined,
    modifiedIndex: n.modifiedIndex || undefined,
    createdIndex: n.createdIndex || undefined,
  };
}
