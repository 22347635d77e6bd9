/**
 * A fault-injecting TCP proxy for the peer links of a cluster on loopback.
 *
 * Layout: every member gets a *front*, a listener on its own free port; the member advertises
 * the front's URL as its peer URL (so that is what every other member dials) and listens for
 * peers on its real port behind the front. A test can then cut, slow and heal the link between
 * any pair of members, per direction.
 *
 * What "a direction" means. Raft messages between two members travel over HTTP/1.1 connections
 * in *both* TCP directions (etcd 3.4's peer protocol, which etcd-ts speaks too):
 *  - stream:   B's stream reader dials A (`GET /raft/stream/{message,msgapp}/<B's id>`) and A
 *              writes its messages for B into the response body, for as long as the connection
 *              lives. Messages A→B flow from the *listener* to the *dialer*.
 *  - pipeline: A dials B (`POST /raft`, `POST /raft/snapshot`) and the request body carries a
 *              message (or a snapshot) for B. Messages A→B flow from the *dialer* to the
 *              *listener*.
 *  - other:    everything else a member asks a peer (`GET /version`, `GET /members`,
 *              `/raft/probing`, lease forwarding `POST /leases...`, `POST /members/promote/..`):
 *              request/response, so it needs both directions.
 * The proxy reads the first request head of each accepted connection, classifies it by path, and
 * learns the dialer from the `X-Server-From` header (sent on stream and pipeline requests; the
 * member ID, which the test registers with `registerMember`). The directed link `from → to`
 * ("messages from `from` reach `to`") therefore covers: stream connections `to` dialed at `from`
 * (their response direction), pipeline connections `from` dialed at `to` (their request
 * direction), and other connections between the two (both directions, only when the dialer is
 * known). A one-way cut `from → to` leaves `to → from` intact: `to`'s appends still arrive at
 * `from`, `from`'s answers do not arrive at `to`.
 *
 * Connections without `X-Server-From` (the "other" requests of etcd 3.4) have no known dialer:
 * they are only affected by `isolate(i)`, which cuts every link of member i and blocks all
 * connections to its front.
 *
 * Cutting has two modes, chosen per call:
 *  - "drop" (default): bytes on the affected direction are read and discarded; the sender sees a
 *    healthy connection whose data vanishes (like packet loss on a live TCP stream). On heal,
 *    every connection that discarded anything is closed, since its framing is broken; senders
 *    reconnect.
 *  - "reset": affected connections are destroyed at once, and new ones are destroyed as soon as
 *    their request head shows they are affected (the sender sees connection errors).
 * A delay holds each chunk on the affected direction for `ms` (order kept); the held bytes per
 * direction are bounded (`heldBytesMax`), beyond which the source socket is paused.
 *
 * Owned by the test that created it: `close()` ends every front and connection.
 */
import net from "node:net";

/** How a blocked direction behaves; see the module comment. */
export type CutMode = "drop" | "reset";

/** What a connection carries, from its first request head. */
export type ConnectionKind = "stream" | "pipeline" | "other";

export interface LinkProxyOptions {
  host?: string;
  /** Bytes held back by a delay per connection direction before the source is paused; default 4 MiB. */
  heldBytesMax?: number;
  /** A request head longer than this is not parsed (the connection is classed "other"); default 16 KiB. */
  requestHeadBytesMax?: number;
}

interface LinkRule {
  cut?: CutMode;
  delayMs?: number;
}

/** One direction of a proxied connection. */
interface Pipe {
  source: net.Socket;
  sink: net.Socket;
  /** Chunks waiting for their delay. */
  held: Array<{ chunk: Buffer; releaseAt: number }>;
  heldBytes: number;
  timer: NodeJS.Timeout | undefined;
  dropped: boolean;
}

interface Connection {
  front: number;
  kind: ConnectionKind | undefined;
  /** Member ID (hex, lower case, no leading zeros) of the dialer, if it said. */
  fromId: string | undefined;
  path: string;
  client: net.Socket;
  upstream: net.Socket;
  /** client → upstream (requests). */
  up: Pipe;
  /** upstream → client (responses). */
  down: Pipe;
  closed: boolean;
}

/** Counters for tests and logs. */
export interface LinkProxyStats {
  accepted: number;
  reset: number;
  droppedBytes: number;
  open: number;
}

function normaliseId(id: string | bigint): string {
  const s = typeof id === "bigint" ? id.toString(16) : id.toLowerCase();
  return s.replace(/^0+(?=.)/, "");
}

/** See the module comment. */
export class LinkProxy {
  private readonly host: string;
  private readonly heldBytesMax: number;
  private readonly requestHeadBytesMax: number;
  private readonly fronts = new Map<number, { server: net.Server; port: number; targetPort: number }>();
  private readonly idToMember = new Map<string, number>();
  /** Key `${from}>${to}`. */
  private readonly rules = new Map<string, LinkRule>();
  private readonly isolated = new Map<number, CutMode>();
  private readonly connections = new Set<Connection>();
  readonly stats: LinkProxyStats = { accepted: 0, reset: 0, droppedBytes: 0, open: 0 };

  constructor(options: LinkProxyOptions = {}) {
    this.host = options.host ?? "127.0.0.1";
    this.heldBytesMax = options.heldBytesMax ?? 4 * 1024 * 1024;
    this.requestHeadBytesMax = options.requestHeadBytesMax ?? 16 * 1024;
  }

  /**
   * Opens the front of member `member` on `port` (0: a free port) forwarding to `targetPort`
   * (where the member listens for peers). Returns the front's port.
   */
  async addFront(member: number, targetPort: number, port = 0): Promise<number> {
    if (this.fronts.has(member)) throw new Error(`link proxy: member ${member} already has a front`);
    const server = net.createServer((socket) => this.accept(member, socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: this.host, port, exclusive: true }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const addr = server.address() as net.AddressInfo;
    this.fronts.set(member, { server, port: addr.port, targetPort });
    return addr.port;
  }

  /** The front URL of member `member` (what it advertises). */
  frontUrl(member: number): string {
    const f = this.fronts.get(member);
    if (!f) throw new Error(`link proxy: no front for member ${member}`);
    return `http://${this.host}:${f.port}`;
  }

  /** Tells the proxy member `member`'s ID (as sent in X-Server-From) so it can attribute connections. */
  registerMember(member: number, id: string | bigint): void {
    this.idToMember.set(normaliseId(id), member);
    this.reapply();
  }

  /** Messages from `from` no longer reach `to` (see the module comment for the exact effect). */
  cut(from: number, to: number, mode: CutMode = "drop"): void {
    this.rule(from, to).cut = mode;
    this.reapply();
  }

  /** Both directions between `a` and `b`. */
  partition(a: number, b: number, mode: CutMode = "drop"): void {
    this.rule(a, b).cut = mode;
    this.rule(b, a).cut = mode;
    this.reapply();
  }

  /** Cuts member `i` off from every other member, including connections of unknown origin. */
  isolate(i: number, mode: CutMode = "drop"): void {
    this.isolated.set(i, mode);
    for (const j of this.fronts.keys()) {
      if (j === i) continue;
      this.rule(i, j).cut = mode;
      this.rule(j, i).cut = mode;
    }
    this.reapply();
  }

  /** Messages from `from` to `to` arrive `ms` later (0 removes the delay). */
  delay(from: number, to: number, ms: number): void {
    this.rule(from, to).delayMs = ms > 0 ? ms : undefined;
    this.reapply();
  }

  /** Removes every cut and delay; connections that discarded data are closed. */
  healAll(): void {
    this.rules.clear();
    this.isolated.clear();
    this.reapply();
  }

  /** Removes the cuts (not the delays) between `a` and `b`, both directions. */
  heal(a: number, b: number): void {
    for (const key of [`${a}>${b}`, `${b}>${a}`]) {
      const r = this.rules.get(key);
      if (r) delete r.cut;
    }
    this.isolated.delete(a);
    this.isolated.delete(b);
    this.reapply();
  }

  /** Open connections (for tests): front, kind, dialer. */
  describeConnections(): Array<{ front: number; kind: ConnectionKind | undefined; from: number | undefined; path: string }> {
    return [...this.connections].map((c) => ({ front: c.front, kind: c.kind, from: this.origin(c), path: c.path }));
  }

  async close(): Promise<void> {
    for (const c of this.connections) this.destroy(c);
    await Promise.all([...this.fronts.values()].map((f) => new Promise<void>((resolve) => f.server.close(() => resolve()))));
    this.fronts.clear();
  }

  // -------------------------------------------------------------------------------------------

  private rule(from: number, to: number): LinkRule {
    const key = `${from}>${to}`;
    let r = this.rules.get(key);
    if (!r) {
      r = {};
      this.rules.set(key, r);
    }
    return r;
  }

  private origin(c: Connection): number | undefined {
    return c.fromId === undefined ? undefined : this.idToMember.get(c.fromId);
  }

  /**
   * The rule for each direction of `c`: `up` (dialer → front's member) and `down`. An
   * unclassified connection (no request head yet) gets none.
   */
  private effect(c: Connection): { up: LinkRule; down: LinkRule } {
    const none = { up: {}, down: {} };
    if (c.kind === undefined) return none;
    const target = c.front;
    const isolatedMode = this.isolated.get(target);
    const from = this.origin(c);
    if (from === undefined) {
      if (isolatedMode !== undefined) return { up: { cut: isolatedMode }, down: { cut: isolatedMode } };
      // An unknown dialer may or may not be an isolated member: let it through.
      return none;
    }
    if (from === target) return none;
    const dialerToTarget = this.rules.get(`${from}>${target}`) ?? {};
    const targetToDialer = this.rules.get(`${target}>${from}`) ?? {};
    switch (c.kind) {
      case "stream":
        // The target writes its messages for the dialer into the response.
        return { up: {}, down: targetToDialer };
      case "pipeline":
        return { up: dialerToTarget, down: {} };
      case "other": {
        // A request/response exchange needs both directions: either cut breaks it.
        const cut = dialerToTarget.cut ?? targetToDialer.cut;
        return { up: { cut, delayMs: dialerToTarget.delayMs }, down: { cut, delayMs: targetToDialer.delayMs } };
      }
    }
  }

  /** Re-evaluates every connection after a rule change: resets, and closes healed dropped ones. */
  private reapply(): void {
    for (const c of [...this.connections]) {
      if (c.kind === undefined) continue;
      const e = this.effect(c);
      if (e.up.cut === "reset" || e.down.cut === "reset") {
        this.stats.reset++;
        this.destroy(c);
        continue;
      }
      if ((c.up.dropped && e.up.cut !== "drop") || (c.down.dropped && e.down.cut !== "drop")) this.destroy(c);
    }
  }

  private accept(front: number, client: net.Socket): void {
    const f = this.fronts.get(front);
    if (!f) {
      client.destroy();
      return;
    }
    this.stats.accepted++;
    const upstream = net.connect({ host: this.host, port: f.targetPort });
    const pipe = (source: net.Socket, sink: net.Socket): Pipe => ({ source, sink, held: [], heldBytes: 0, timer: undefined, dropped: false });
    const c: Connection = {
      front,
      kind: undefined,
      fromId: undefined,
      path: "",
      client,
      upstream,
      up: pipe(client, upstream),
      down: pipe(upstream, client),
      closed: false,
    };
    this.connections.add(c);
    this.stats.open = this.connections.size;
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const onGone = (): void => this.destroy(c);
    client.on("error", onGone).on("close", onGone);
    upstream.on("error", onGone).on("close", onGone);

    let head = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      if (c.kind === undefined) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0 && head.length <= this.requestHeadBytesMax) return;
        this.classify(c, head.subarray(0, end < 0 ? head.length : end).toString("latin1"));
        const e = this.effect(c);
        if (e.up.cut === "reset" || e.down.cut === "reset") {
          this.stats.reset++;
          this.destroy(c);
          return;
        }
        chunk = head;
        head = Buffer.alloc(0);
      }
      this.forward(c, c.up, chunk, this.effect(c).up);
    });
    upstream.on("data", (chunk: Buffer) => this.forward(c, c.down, chunk, this.effect(c).down));
  }

  private classify(c: Connection, head: string): void {
    const lines = head.split("\r\n");
    const [method = "", path = ""] = (lines[0] ?? "").split(" ");
    c.path = `${method} ${path}`;
    for (const line of lines.slice(1)) {
      const m = /^x-server-from:\s*([0-9a-fA-F]+)\s*$/i.exec(line);
      if (m) c.fromId = normaliseId(m[1]!);
    }
    if (method === "GET" && path.startsWith("/raft/stream/")) c.kind = "stream";
    else if (method === "POST" && (path === "/raft" || path.startsWith("/raft/snapshot"))) c.kind = "pipeline";
    else c.kind = "other";
  }

  private forward(c: Connection, p: Pipe, chunk: Buffer, rule: LinkRule): void {
    if (c.closed) return;
    if (rule.cut === "drop") {
      p.dropped = true;
      this.stats.droppedBytes += chunk.length;
      return;
    }
    if (rule.cut === "reset") {
      this.stats.reset++;
      this.destroy(c);
      return;
    }
    const delayMs = rule.delayMs ?? 0;
    if (delayMs <= 0 && p.held.length === 0) {
      p.sink.write(chunk);
      return;
    }
    p.held.push({ chunk, releaseAt: Date.now() + delayMs });
    p.heldBytes += chunk.length;
    if (p.heldBytes > this.heldBytesMax) p.source.pause();
    this.schedule(c, p);
  }

  private schedule(c: Connection, p: Pipe): void {
    if (p.timer !== undefined || p.held.length === 0 || c.closed) return;
    const wait = Math.max(0, p.held[0]!.releaseAt - Date.now());
    p.timer = setTimeout(() => {
      p.timer = undefined;
      const now = Date.now();
      while (p.held.length > 0 && p.held[0]!.releaseAt <= now) {
        const { chunk } = p.held.shift()!;
        p.heldBytes -= chunk.length;
        if (!c.closed) p.sink.write(chunk);
      }
      if (p.heldBytes <= this.heldBytesMax && p.source.isPaused()) p.source.resume();
      this.schedule(c, p);
    }, wait);
  }

  private destroy(c: Connection): void {
    if (c.closed) return;
    c.closed = true;
    for (const p of [c.up, c.down]) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.held = [];
    }
    c.client.destroy();
    c.upstream.destroy();
    this.connections.delete(c);
    this.stats.open = this.connections.size;
  }
}
