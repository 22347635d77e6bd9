/**
 * The dial of a stream reader: `GET /raft/stream/...` sent on a connection of its own, and the
 * answer read here rather than through node:http's client. A stream's body is a long run of
 * small HTTP/1.1 chunks (a follower reads two or three per put); through node:http each one
 * crossed into C++ for llhttp and back, and through an IncomingMessage, before it reached the
 * frame decoder. Here the head is parsed once and each chunk's framing is a few byte compares
 * on the socket's own data.
 *
 * Only what a peer's answer to that GET can be is read: HTTP/1.0 or 1.1, a body that is chunked
 * (what node:http and Go's server send for an answer without a length), of a Content-Length, or
 * up to the close. Informational (1xx) heads are skipped. The connection is never reused: the
 * request asks the peer to close it once the answer ends.
 */
import net from "node:net";
import tls from "node:tls";

/** A stream's answer head may not be longer than this. */
const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size line (hex digits and any chunk extension) may not be longer than this. */
const MAX_CHUNK_LINE_BYTES = 4096;

/** The dial failed or its answer broke the protocol. */
export class StreamDialError extends Error {
  override name = "StreamDialError";
}

export interface StreamDialOptions {
  /** Set for an https URL: tls.connect's options (CA, client certificate, identity check). */
  tls?: tls.ConnectionOptions;
  /** How long the connection and the answer's head may take together. */
  timeoutMs: number;
}

/**
 * Sends `GET url` with `headers` and resolves once the answer's head is read.
 * @throws StreamDialError when the connection fails, the head does not arrive in time or is not HTTP.
 */
export function dialStream(url: string, headers: Record<string, string>, options: StreamDialOptions): Promise<StreamAnswer> {
  const u = new URL(url);
  const secure = u.protocol === "https:";
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  const port = Number(u.port || (secure ? 443 : 80));
  const socket: net.Socket = secure
    ? tls.connect({ ...options.tls, host, port, servername: net.isIP(host) === 0 ? host : undefined })
    : net.connect({ host, port });
  socket.setNoDelay(true);
  const answer = new StreamAnswer(socket);
  const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  lines.push("Connection: close", "", "");
  socket.write(lines.join("\r\n"));
  return answer.head(options.timeoutMs).catch((err: Error) => {
    throw new StreamDialError(`GET ${url}: ${err.message}`);
  });
}

const CR = 0x0d;
const LF = 0x0a;

/** The value of hex digit `c` (a byte), or -1. */
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x57 : -1;
}

const enum Framing {
  Chunked,
  Length,
  Close,
}

const enum ChunkState {
  /** Reading the chunk-size line. */
  Size,
  /** Inside a chunk's data. */
  Data,
  /** Reading the CRLF after a chunk's data. */
  DataEnd,
  /** After the last chunk: reading trailer lines up to the empty one. */
  Trailer,
  Done,
}

/** The answer to a stream GET: its status and head, then its body as it arrives. */
export class StreamAnswer {
  status = 0;
  /** The head's fields, names in lower case (repeated fields joined with ", "). */
  headers: Record<string, string> = {};
  /** The head as received so far; undefined once it is parsed. */
  private headBytes: Buffer | undefined = Buffer.alloc(0);
  private framing = Framing.Close;
  private remaining = 0;
  private state = ChunkState.Size;
  private line = "";
  /** Body bytes that arrived before `read` (with the head, or while the caller looked at it). */
  private early: Uint8Array[] = [];
  private onBody: ((data: Uint8Array) => void) | undefined;
  private finish: ((err: Error | undefined) => void) | undefined;
  private ended: Error | undefined | null = null;

  constructor(private readonly socket: net.Socket) {
    socket.on("data", (data: Buffer) => this.onData(data));
    socket.on("end", () => this.end(this.framing === Framing.Close && this.headBytes === undefined ? undefined : new Error("the peer closed the stream")));
    socket.on("error", (err) => this.end(err));
    socket.on("close", () => this.end(new Error("stream closed")));
  }

  /** Resolves with this answer once its head is read (within `timeoutMs` of the dial). */
  head(timeoutMs: number): Promise<StreamAnswer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.finish = undefined;
        reject(new Error("timed out"));
        this.destroy();
      }, timeoutMs);
      this.finish = (err) => {
        clearTimeout(timer);
        this.finish = undefined;
        if (err !== undefined) reject(err);
        else resolve(this);
      };
    });
  }

  /**
   * Hands the body to `onBody` as it arrives (plain Uint8Array views, the caller's to keep);
   * resolves when the body ends, rejects when the connection breaks first. Once per answer.
   */
  read(onBody: (data: Uint8Array) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.finish = (err) => (err === undefined ? resolve() : reject(err));
      this.onBody = onBody;
      const early = this.early;
      this.early = [];
      for (const data of early) onBody(data);
      if (this.ended !== null) this.settle(this.ended);
    });
  }

  /** Up to `max` bytes of the body as text, once it ends (or the connection does). */
  async text(max: number): Promise<string> {
    const parts: Uint8Array[] = [];
    let size = 0;
    await this.read((data) => {
      if (size < max) parts.push(data);
      size += data.length;
    }).catch(() => undefined);
    return Buffer.concat(parts).toString().slice(0, max);
  }

  /** Reads nothing for `ms`: the connection is destroyed with `err`. */
  setReadTimeout(ms: number, err: () => Error): void {
    this.socket.setTimeout(ms, () => this.destroy(err()));
  }

  destroy(err?: Error): void {
    this.socket.destroy();
    this.end(err ?? new Error("stream closed"));
  }

  private onData(chunk: Buffer): void {
    if (this.ended !== null) return;
    try {
      if (this.headBytes !== undefined) {
        const rest = this.readHead(chunk);
        if (rest === undefined) return;
        this.finish?.(undefined);
        chunk = rest;
      }
      // A plain view: a Buffer's subarray goes through its species constructor, slowly, and the
      // frame decoders would make the same view of each chunk they queue.
      const data = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (this.framing === Framing.Chunked) this.readChunks(data);
      else if (this.framing === Framing.Length) {
        const n = Math.min(this.remaining, data.length);
        this.remaining -= n;
        if (n > 0) this.deliver(n === data.length ? data : data.subarray(0, n));
        if (this.remaining === 0) this.end(undefined);
      } else if (data.length > 0) this.deliver(data);
    } catch (err) {
      this.socket.destroy();
      this.end(err as Error);
    }
  }

  /** Adds `data` to the head; once it is whole, parses it and returns the bytes after it. */
  private readHead(data: Buffer): Buffer | undefined {
    let buf = this.headBytes!.length === 0 ? data : Buffer.concat([this.headBytes!, data]);
    for (;;) {
      const at = buf.indexOf("\r\n\r\n", 0, "latin1");
      if (at < 0) {
        if (buf.length > MAX_HEAD_BYTES) throw new Error("the answer's head is too long");
        this.headBytes = buf;
        return undefined;
      }
      const lines = buf.toString("latin1", 0, at).split("\r\n");
      buf = buf.subarray(at + 4);
      const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]!);
      if (m === null) throw new Error(`malformed HTTP response ${JSON.stringify(lines[0]!.slice(0, 64))}`);
      const status = Number(m[1]);
      if (status >= 100 && status < 200) continue; // an informational head: the answer follows
      this.status = status;
      for (let i = 1; i < lines.length; i++) {
        const colon = lines[i]!.indexOf(":");
        if (colon <= 0) throw new Error(`malformed header line ${JSON.stringify(lines[i]!.slice(0, 64))}`);
        const name = lines[i]!.slice(0, colon).trim().toLowerCase();
        const value = lines[i]!.slice(colon + 1).trim();
        this.headers[name] = name in this.headers ? `${this.headers[name]}, ${value}` : value;
      }
      this.headBytes = undefined;
      const te = this.headers["transfer-encoding"];
      const length = this.headers["content-length"];
      if (te !== undefined && /(?:^|,)\s*chunked\s*$/i.test(te)) this.framing = Framing.Chunked;
      else if (length !== undefined) {
        if (!/^\d+$/.test(length)) throw new Error(`malformed Content-Length ${JSON.stringify(length.slice(0, 32))}`);
        this.framing = Framing.Length;
        this.remaining = Number(length);
      }
      if (this.framing === Framing.Length && this.remaining === 0) this.ended = undefined;
      return buf;
    }
  }

  /** Takes the chunk framing off `data`, handing the chunks' data on. */
  private readChunks(data: Uint8Array): void {
    let i = 0;
    const n = data.length;
    while (i < n) {
      switch (this.state) {
        case ChunkState.Data: {
          const take = Math.min(this.remaining, n - i);
          this.deliver(i === 0 && take === n ? data : data.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.state = ChunkState.DataEnd;
            this.line = "";
          }
          break;
        }
        case ChunkState.Size:
          if (this.line === "") {
            // The whole line here, hex digits and CRLF (as every writer we know sends it): read in place.
            let j = i;
            let size = 0;
            for (; j < n && j - i <= 12; j++) {
              const d = hexDigit(data[j]!);
              if (d < 0) break;
              size = size * 16 + d;
            }
            if (j > i && j - i <= 12 && j + 1 < n && data[j] === CR && data[j + 1] === LF) {
              i = j + 2;
              this.remaining = size;
              this.state = size === 0 ? ChunkState.Trailer : ChunkState.Data;
              break;
            }
          }
          i = this.readLine(data, i);
          break;
        case ChunkState.DataEnd:
          if (this.line === "" && i + 1 < n && data[i] === CR && data[i + 1] === LF) {
            i += 2;
            this.state = ChunkState.Size;
            break;
          }
          i = this.readLine(data, i);
          break;
        case ChunkState.Trailer:
          i = this.readLine(data, i);
          if ((this.state as ChunkState) === ChunkState.Done) {
            this.end(undefined);
            return;
          }
          break;
        case ChunkState.Done:
          return;
      }
    }
  }

  /** Adds `data[i, …)` up to a LF to the line being read; a whole line is taken. @returns where reading goes on */
  private readLine(data: Uint8Array, i: number): number {
    const lf = data.indexOf(LF, i);
    this.line += Buffer.from(data.buffer, data.byteOffset + i, (lf < 0 ? data.length : lf) - i).toString("latin1");
    if (this.line.length > MAX_CHUNK_LINE_BYTES) throw new Error("a chunk line is too long");
    if (lf < 0) return data.length;
    const line = this.line.endsWith("\r") ? this.line.slice(0, -1) : this.line;
    this.line = "";
    this.onLine(line);
    return lf + 1;
  }

  private onLine(line: string): void {
    if (this.state === ChunkState.DataEnd) {
      if (line !== "") throw new Error("a chunk's data is not followed by CRLF");
      this.state = ChunkState.Size;
      return;
    }
    if (this.state === ChunkState.Trailer) {
      if (line === "") this.state = ChunkState.Done;
      return;
    }
    const semi = line.indexOf(";");
    const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
    if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new Error(`malformed chunk size ${JSON.stringify(hex.slice(0, 32))}`);
    this.remaining = parseInt(hex, 16);
    this.state = this.remaining === 0 ? ChunkState.Trailer : ChunkState.Data;
  }

  private deliver(data: Uint8Array): void {
    if (this.onBody !== undefined) this.onBody(data);
    else this.early.push(data);
  }

  /** The body ended (`undefined`) or the connection broke (`err`); the first word counts. */
  private end(err: Error | undefined): void {
    if (this.ended !== null) return;
    this.ended = err;
    if (this.headBytes !== undefined) {
      this.finish?.(err ?? new Error("the connection closed before the answer's head"));
      return;
    }
    if (this.onBody !== undefined) this.settle(err);
  }

  private settle(err: Error | undefined): void {
    const finish = this.finish;
    this.finish = undefined;
    finish?.(err);
    if (err === undefined) this.socket.destroy();
  }
}
