/**
 * The opening of a client's HTTP/2 connection, read by the client listener before it hands the
 * connection to the gRPC server, to choose how to hand it over:
 *
 *  - "native": the session takes the socket itself (fast: nghttp2 reads the socket's handle);
 *  - "rewrite": the session reads the socket through `AuthorityRewriter` (a JS stream, ~20% of
 *    the server's CPU under load), needed only by clients whose requests carry a URL-shaped
 *    `:authority` that Node's HTTP/2 would reject (Go gRPC's per-endpoint dials, e.g. `etcdctl
 *    --endpoints=http://host:port endpoint status`).
 *
 * Go gRPC clients send the preface and their SETTINGS, then wait for the server's SETTINGS before
 * they send anything else. So the listener sends a SETTINGS frame of its own as soon as it has
 * seen the preface (`serverSettingsFrame`: the same values the session will send later), and
 * feeds what the client sends to an `H2Opening` until the client's first request shows its
 * `:authority`. The session, once it has the connection, sends its own SETTINGS: a client sees
 * two, which RFC 9113 §6.5 allows. The client ACKs both; the ACK of the listener's SETTINGS is
 * removed from the bytes handed over, since the session would take it for the ACK of its own and
 * then fail the connection (PROTOCOL_ERROR) when the real one arrives.
 *
 * Frames (RFC 9113 §4.1): length(24) type(8) flags(8) R+stream(31), then `length` bytes.
 *
 * Decision rules, first match wins:
 *  - the first HEADERS block (with its CONTINUATIONs): URL-shaped `:authority` → rewrite;
 *    undecodable block → rewrite (the path every connection took before); else → native;
 *  - a frame that needs the session's attention (DATA, RST_STREAM, PING, GOAWAY, PUSH_PROMISE, a
 *    stray CONTINUATION) before any HEADERS → native;
 *  - SETTINGS, WINDOW_UPDATE, PRIORITY and unknown frame types are kept and decide nothing;
 *  - the listener's own deadlines (idle client, missing ACK) decide the rest (client-listener.ts).
 * The connection may be handed over natively only once the ACK has been seen and removed; until
 * then only "rewrite" (with `AuthorityRewriter` removing the late ACK) is possible.
 */
import http2 from "node:http2";
import { firstBlockAuthority, isUrlAuthority } from "./h2-authority.js";

export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

const FRAME_HEADER_BYTES = 9;
const TYPE_DATA = 0;
const TYPE_HEADERS = 1;
const TYPE_PRIORITY = 2;
const TYPE_RST_STREAM = 3;
const TYPE_SETTINGS = 4;
const TYPE_PUSH_PROMISE = 5;
const TYPE_PING = 6;
const TYPE_GOAWAY = 7;
const TYPE_WINDOW_UPDATE = 8;
const TYPE_CONTINUATION = 9;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** SETTINGS_MAX_FRAME_SIZE's initial value: the largest frame a client may send us (§6.5.2). */
const FRAME_PAYLOAD_BYTES_MAX = 16_384;

export type H2Path = "native" | "rewrite";

export interface H2Decision {
  path: H2Path;
  /** Why, for logs and tests: "request", "url-authority", "bad-headers", "frame-<type>", or a listener deadline. */
  reason: string;
  /** The first request's `:authority` (latin1), when one was decoded. */
  authority?: string;
}

/**
 * The SETTINGS frame the listener sends right after the client's preface: `settings` packed as
 * Node's HTTP/2 packs them (pass the settings the gRPC server's sessions use, so the client is
 * told nothing it will not be told again; empty means "all defaults").
 */
export function serverSettingsFrame(settings: http2.Settings = {}): Buffer {
  const payload = http2.getPackedSettings(settings);
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = TYPE_SETTINGS;
  return Buffer.concat([header, payload]);
}

/**
 * Reads the opening of one HTTP/2 connection (pure: no I/O, no timers). Feed it every byte the
 * client sends, starting with the preface; read `decision` and `settingsAckSeen` after each push.
 */
export class H2Opening {
  private bytes: Buffer = Buffer.alloc(0);
  /** Offset of the first frame not yet scanned. */
  private scanAt = H2_PREFACE.length;
  /** [start, end) of the ACK of our SETTINGS, once seen. */
  private ack: [number, number] | undefined;
  /** Fragments of the first header block while its CONTINUATIONs are still to come. */
  private headerFragments: Buffer[] | undefined;
  private decided: H2Decision | undefined;
  private malformed = false;

  /** The decision, once the bytes so far allow one. Never changes once set. */
  get decision(): H2Decision | undefined {
    return this.decided;
  }

  /** Whether the client's first SETTINGS ACK (the ACK of the listener's SETTINGS) has arrived. */
  get settingsAckSeen(): boolean {
    return this.ack !== undefined;
  }

  /**
   * Whether the bytes cannot be framed any further (a frame larger than the client may send):
   * the session will reject the connection; scanning stops.
   */
  get unframeable(): boolean {
    return this.malformed;
  }

  /** Whether the bytes end inside a frame or inside a header block (more of it is on its way). */
  get endsIncomplete(): boolean {
    return !this.malformed && (this.scanAt < this.bytes.length || this.headerFragments !== undefined);
  }

  /** Bytes received so far. */
  get bufferedBytes(): number {
    return this.bytes.length;
  }

  /**
   * Appends bytes the client sent and scans every complete frame among them. The first push must
   * start with the 24-byte preface (checked by the caller).
   */
  push(chunk: Buffer): void {
    this.bytes = this.bytes.length === 0 ? chunk : Buffer.concat([this.bytes, chunk]);
    this.scan();
  }

  /** Everything received so far, minus the ACK of the listener's SETTINGS. A fresh buffer. */
  takeBytes(): Buffer {
    if (this.ack === undefined) return Buffer.from(this.bytes);
    const [start, end] = this.ack;
    return Buffer.concat([this.bytes.subarray(0, start), this.bytes.subarray(end)]);
  }

  /** Records a decision made outside the bytes (a listener deadline); ignored once decided. */
  decide(path: H2Path, reason: string): void {
    this.decided ??= { path, reason };
  }

  private scan(): void {
    while (!this.malformed && this.scanAt + FRAME_HEADER_BYTES <= this.bytes.length) {
      const at = this.scanAt;
      const length = this.bytes.readUIntBE(at, 3);
      if (length > FRAME_PAYLOAD_BYTES_MAX) {
        this.malformed = true;
        this.decide("native", "frame-too-large");
        return;
      }
      const end = at + FRAME_HEADER_BYTES + length;
      if (end > this.bytes.length) return;
      this.onFrame(this.bytes[at + 3]!, this.bytes[at + 4]!, at, end);
      this.scanAt = end;
    }
  }

  private onFrame(type: number, flags: number, start: number, end: number): void {
    const payload = this.bytes.subarray(start + FRAME_HEADER_BYTES, end);
    if (type === TYPE_SETTINGS && (flags & FLAG_ACK) !== 0) {
      if (this.ack === undefined && payload.length === 0) this.ack = [start, end];
      return;
    }
    if (this.decided !== undefined) return;
    if (this.headerFragments !== undefined) {
      if (type !== TYPE_CONTINUATION) {
        this.decide("native", "broken-header-block"); // the session will reject it
        return;
      }
      this.headerFragments.push(payload);
      if (flags & FLAG_END_HEADERS) this.decideOnHeaders(Buffer.concat(this.headerFragments));
      return;
    }
    switch (type) {
      case TYPE_HEADERS: {
        const fragment = headerBlockFragment(payload, flags);
        if (fragment === undefined) {
          this.decide("native", "bad-headers-frame");
        } else if (flags & FLAG_END_HEADERS) {
          this.decideOnHeaders(fragment);
        } else {
          this.headerFragments = [fragment];
        }
        return;
      }
      case TYPE_SETTINGS:
      case TYPE_WINDOW_UPDATE:
      case TYPE_PRIORITY:
        return;
      case TYPE_DATA:
      case TYPE_RST_STREAM:
      case TYPE_PUSH_PROMISE:
      case TYPE_PING:
      case TYPE_GOAWAY:
      case TYPE_CONTINUATION:
        this.decide("native", `frame-${type}`);
        return;
      default:
        return; // extension frames are ignored (§5.5)
    }
  }

  private decideOnHeaders(block: Buffer): void {
    this.headerFragments = undefined;
    let authority: string | undefined;
    try {
      authority = firstBlockAuthority(block);
    } catch {
      this.decide("rewrite", "bad-headers");
      return;
    }
    if (authority !== undefined && isUrlAuthority(authority)) {
      this.decided = { path: "rewrite", reason: "url-authority", authority };
    } else {
      this.decided = authority === undefined ? { path: "native", reason: "request" } : { path: "native", reason: "request", authority };
    }
  }
}

/** The header block fragment of a HEADERS frame's payload, without padding and priority fields. */
function headerBlockFragment(payload: Buffer, flags: number): Buffer | undefined {
  let start = 0;
  let end = payload.length;
  if (flags & FLAG_PADDED) {
    if (payload.length < 1) return undefined;
    end -= payload[0]!;
    start = 1;
  }
  if (flags & FLAG_PRIORITY) start += 5;
  return start <= end ? payload.subarray(start, end) : undefined;
}
