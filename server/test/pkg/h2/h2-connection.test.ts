import * as http2 from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import {
  CLIENT_PREFACE,
  FLAG_END_HEADERS,
  FLAG_PRIORITY,
  FRAME_CONTINUATION,
  type FrameWriter,
  FRAME_DATA,
  FRAME_GOAWAY,
  FRAME_HEADERS,
  FRAME_PING,
  FRAME_RST_STREAM,
  FRAME_SETTINGS,
  H2_CANCEL,
  H2_COMPRESSION_ERROR,
  H2_ENHANCE_YOUR_CALM,
  H2_FLOW_CONTROL_ERROR,
  H2_FRAME_SIZE_ERROR,
  H2_NO_ERROR,
  H2_PROTOCOL_ERROR,
  H2_REFUSED_STREAM,
  H2_SETTINGS_TIMEOUT,
  H2_STREAM_CLOSED,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_FRAME_SIZE,
} from "../../../src/pkg/h2/frame-codec.js";
import type { H2ConnectionOptions, H2Stream } from "../../../src/pkg/h2/h2-connection.js";
import { encodeHeaderBlock } from "../../../src/pkg/h2/hpack.js";
import { RawClient, type TestServer, clientBytes, rawExchange, startServer } from "./peer.js";
import { seededUniform } from "../../../../test/harness/seeded-random.js";

const RESPONSE = encodeHeaderBlock([":status", "200", "content-type", "application/octet-stream"]);
const TRAILERS = encodeHeaderBlock(["x-done", "yes"]);

/** Echoes each request's body back after its end, with trailers carrying the byte count. */
function echo(stream: H2Stream): void {
  const chunks: Buffer[] = [];
  stream.onData = (c) => chunks.push(Buffer.from(c));
  stream.onEnd = () => {
    const body = Buffer.concat(chunks);
    stream.respond(RESPONSE);
    const write = (offset: number): void => {
      while (offset < body.length) {
        const piece = body.subarray(offset, offset + 100_000);
        offset += piece.length;
        if (!stream.write(piece)) {
          stream.onDrain = () => write(offset);
          return;
        }
      }
      stream.end(encodeHeaderBlock(["x-done", "yes", "x-bytes", String(body.length)]));
    };
    write(0);
  };
}

interface Reply {
  status: number | undefined;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders | undefined;
  rstCode: number;
}

function request(client: http2.ClientHttp2Session, path: string, body: Buffer, onStream?: (req: http2.ClientHttp2Stream) => void): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = client.request({ ":method": "POST", ":path": path });
    let status: number | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on("response", (h) => (status = Number(h[":status"])));
    req.on("trailers", (t) => (trailers = t));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", () => {});
    req.on("close", () => resolve({ status, body: Buffer.concat(chunks), trailers, rstCode: req.rstCode ?? 0 }));
    onStream?.(req);
    req.end(body);
    void reject;
  });
}

/** Polls `done` every 5 ms for up to 10 s (a loaded machine may be slow; the test never depends on a fixed delay). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !done(); i++) await new Promise((r) => setTimeout(r, 5));
}

let server: TestServer | undefined;
let client: http2.ClientHttp2Session | undefined;
afterEach(async () => {
  client?.destroy();
  client = undefined;
  await server?.close();
  server = undefined;
});

async function setup(onStream: (s: H2Stream) => void, options: H2ConnectionOptions = {}, clientSettings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  server = await startServer(onStream, options);
  client = http2.connect(`http://127.0.0.1:${server.port}`, { settings: clientSettings });
  client.on("error", () => {});
  return client;
}

describe("H2Connection against node:http2's client", () => {
  it("serves many concurrent streams", async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 100000);
    const rand = seededUniform(seed);
    const c = await setup(echo);
    const bodies = Array.from({ length: 300 }, () => Buffer.alloc(Math.floor(rand() * 3000), Math.floor(rand() * 256)));
    try {
      const replies = await Promise.all(bodies.map((b, i) => request(c, `/echo/${i}`, b)));
      replies.forEach((r, i) => {
        expect(r.status).toBe(200);
        expect(r.body.equals(bodies[i]!)).toBe(true);
        expect(r.trailers?.["x-bytes"]).toBe(String(bodies[i]!.length));
      });
    } catch (err) {
      console.log(`seed=${seed}`);
      throw err;
    }
    expect(server!.connections[0]!.streamCount).toBe(0);
  });

  it("moves bodies far past the initial windows both ways", async () => {
    // our stream window is the protocol default: the client must wait for our WINDOW_UPDATEs;
    // the client's own windows are the default too: we must wait for its
    const c = await setup(echo, { initialWindowSize: 65535, connectionWindowSize: 65535 });
    const body = Buffer.alloc(3 << 20);
    for (let i = 0; i < body.length; i += 4) body.writeUInt32BE(i, i);
    const [a, b] = await Promise.all([request(c, "/big/a", body), request(c, "/big/b", body.subarray(0, 1 << 20))]);
    expect(a.body.length).toBe(body.length);
    expect(a.body.equals(body)).toBe(true);
    expect(b.body.equals(body.subarray(0, 1 << 20))).toBe(true);
    expect(a.trailers?.["x-done"]).toBe("yes");
  });

  it("moves random bodies with small windows on both sides and a client that pauses at random", async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 100000);
    const rand = seededUniform(seed);
    const c = await setup(echo, { initialWindowSize: 16384, connectionWindowSize: 65535, streamWriteHighWaterBytes: 8192 }, { initialWindowSize: 20000 });
    const bodies = Array.from({ length: 40 }, () => {
      const b = Buffer.alloc(Math.floor(rand() * 300_000));
      for (let i = 0; i + 4 <= b.length; i += 4) b.writeUInt32BE(Math.floor(rand() * 2 ** 32), i);
      return b;
    });
    const pauses = bodies.map(() => rand() < 0.5);
    try {
      const replies = await Promise.all(
        bodies.map((b, i) =>
          request(c, `/r/${i}`, b, (req) => {
            if (!pauses[i]) return;
            req.pause();
            setTimeout(() => req.resume(), 20 + (i % 7) * 10);
          }),
        ),
      );
      replies.forEach((r, i) => expect(r.body.equals(bodies[i]!)).toBe(true));
    } catch (err) {
      console.log(`seed=${seed}`);
      throw err;
    }
  });

  it("keeps a stream's queue bounded when the client stops reading, and finishes when it reads again", async () => {
    const total = 32 << 20;
    const chunk = Buffer.alloc(16384, 7);
    let written = 0;
    let maxQueued = 0;
    let stream: H2Stream | undefined;
    const c = await setup((s) => {
      stream = s;
      s.onEnd = () => {
        s.respond(RESPONSE);
        const pump = (): void => {
          while (written < total) {
            written += chunk.length;
            const ok = s.write(chunk);
            maxQueued = Math.max(maxQueued, s.writableLength);
            if (!ok) return;
          }
          s.end(TRAILERS);
        };
        s.onDrain = pump;
        pump();
      };
    }, { streamWriteHighWaterBytes: 65536 });
    let req: http2.ClientHttp2Stream | undefined;
    const reply = request(c, "/flood", Buffer.alloc(0), (r) => {
      req = r;
      r.pause();
    });
    await new Promise((r) => setTimeout(r, 1000));
    const writtenWhilePaused = written;
    // nothing is read: the server stops at the client's windows plus its own queue bound
    expect(writtenWhilePaused).toBeLessThan(8 << 20);
    expect(maxQueued).toBeLessThanOrEqual(65536 + chunk.length);
    expect(stream!.closed).toBe(false);
    req!.resume();
    const r = await reply;
    expect(r.body.length).toBe(total);
    expect(r.trailers?.["x-done"]).toBe("yes");
  });

  it("sees the client's RST_STREAM mid-stream, and the client sees ours", async () => {
    let closedWith: number | undefined;
    let received = 0;
    const c = await setup((s) => {
      if (s.header(":path") === "/reset-me") {
        s.respond(RESPONSE);
        s.write(Buffer.alloc(1000));
        setTimeout(() => s.reset(H2_REFUSED_STREAM), 50);
        return;
      }
      if (s.header(":path") !== "/upload") return echo(s);
      s.onData = (d) => (received += d.length);
      s.onClose = (code) => (closedWith = code);
    });
    const req = c.request({ ":method": "POST", ":path": "/upload" });
    req.on("error", () => {});
    req.write(Buffer.alloc(5000));
    await until(() => received === 5000);
    req.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((r) => req.on("close", r));
    await until(() => closedWith !== undefined);
    expect(received).toBe(5000);
    expect(closedWith).toBe(H2_CANCEL);
    expect(server!.connections[0]!.streamCount).toBe(0);

    const r = await request(c, "/reset-me", Buffer.alloc(0));
    expect(r.rstCode).toBe(H2_REFUSED_STREAM);
    // the connection carries on
    const ok = await request(c, "/echo", Buffer.alloc(10));
    expect(ok.rstCode).toBe(0);
    expect(ok.body.length).toBe(10);
  });

  it("answers PING", async () => {
    const c = await setup(echo);
    await new Promise((r) => c.once("connect", r));
    const payload = Buffer.from("abcdefgh");
    const echoed = await new Promise<Buffer>((resolve, reject) => c.ping(payload, (err, _ms, p) => (err ? reject(err) : resolve(p))));
    expect(echoed.equals(payload)).toBe(true);
  });

  it("closes gracefully with GOAWAY: open streams finish, the socket ends", async () => {
    let held: H2Stream | undefined;
    const c = await setup((s) => {
      held = s;
    });
    const goaway = new Promise<number>((resolve) => c.on("goaway", (code) => resolve(code)));
    const reply = request(c, "/slow", Buffer.from("x"));
    while (held === undefined) await new Promise((r) => setTimeout(r, 10));
    server!.connections[0]!.close();
    expect(await goaway).toBe(H2_NO_ERROR);
    held.respond(RESPONSE);
    held.write(Buffer.from("late"));
    held.end(TRAILERS);
    const r = await reply;
    expect(r.body.toString()).toBe("late");
    await new Promise((r) => c.on("close", r));
  });

  it("stops at the client's GOAWAY after the open streams finish", async () => {
    const c = await setup(echo);
    expect((await request(c, "/a", Buffer.from("1"))).status).toBe(200);
    c.close();
    await new Promise((r) => c.on("close", r));
  });

  it("refuses streams past MAX_CONCURRENT_STREAMS", async () => {
    const held: H2Stream[] = [];
    const c = await setup((s) => held.push(s), { maxConcurrentStreams: 2 });
    // node's client honours our limit by queueing; a raw client does not
    void c;
    const bytes = clientBytes((w) => {
      for (const id of [1, 3, 5]) w.headers(id, encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]), false, 16384);
    });
    const { frames } = await rawExchange(server!.port, bytes, 5000, (fs) => fs.some((f) => f.type === FRAME_RST_STREAM));
    expect(frames.find((f) => f.type === FRAME_RST_STREAM)).toMatchObject({ streamId: 5, code: H2_REFUSED_STREAM });
  });
});

describe("H2Connection on malformed input", () => {
  const goawayOf = (frames: { type: number; code?: number }[]): number | undefined => frames.find((f) => f.type === FRAME_GOAWAY)?.code;

  it("answers each with the right GOAWAY code and stays up for the next client", async () => {
    server = await startServer(echo, { closeLingerMs: 200 });
    const port = server.port;

    const badPreface = await rawExchange(port, Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    expect(goawayOf(badPreface.frames)).toBe(H2_PROTOCOL_ERROR);
    expect(badPreface.closed).toBe(true);

    const tooLarge = await rawExchange(port, Buffer.concat([clientBytes(), Buffer.from([0x00, 0x40, 0x01, FRAME_DATA, 0, 0, 0, 0, 1])]));
    expect(goawayOf(tooLarge.frames)).toBe(H2_FRAME_SIZE_ERROR);

    const badHpack = await rawExchange(port, clientBytes((w) => w.raw(FRAME_HEADERS, FLAG_END_HEADERS, 1, Buffer.from([0x80]))));
    expect(goawayOf(badHpack.frames)).toBe(H2_COMPRESSION_ERROR);

    const notSettings = await rawExchange(port, Buffer.concat([clientBytes().subarray(0, 24), Buffer.from([0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])]));
    expect(goawayOf(notSettings.frames)).toBe(H2_PROTOCOL_ERROR);

    const evenStream = await rawExchange(port, clientBytes((w) => w.headers(2, encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]), true, 16384)));
    expect(goawayOf(evenStream.frames)).toBe(H2_PROTOCOL_ERROR);

    // §5.1.1: HEADERS on 5, then on 3 (an id below the last one used): PROTOCOL_ERROR (h2spec http2/5.1.1/2)
    const lowerId = await rawExchange(
      port,
      clientBytes((w) => {
        w.headers(5, encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]), true, 16384);
        w.headers(3, encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]), true, 16384);
      }),
    );
    expect(goawayOf(lowerId.frames)).toBe(H2_PROTOCOL_ERROR);

    const dataAfterEnd = await rawExchange(
      port,
      clientBytes((w) => {
        w.headers(1, encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]), true, 16384);
        w.data(1, Buffer.from("late"), false);
      }),
      5000,
      (fs) => fs.some((f) => f.type === FRAME_HEADERS && f.flags === 1),
    );
    // the echo answered already and closed the stream: the late DATA is ignored, or, if it
    // arrived first, reset with STREAM_CLOSED; the connection lives on either way
    expect(goawayOf(dataAfterEnd.frames)).toBeUndefined();
    const rst = dataAfterEnd.frames.find((f) => f.type === FRAME_RST_STREAM);
    if (rst !== undefined) expect([H2_STREAM_CLOSED, H2_NO_ERROR]).toContain(rst.code);

    const malformed = await rawExchange(port, clientBytes((w) => w.headers(1, encodeHeaderBlock([":method", "GET", ":path", "/", "Upper", "x"]), true, 16384)), 5000, (fs) =>
      fs.some((f) => f.type === FRAME_RST_STREAM),
    );
    expect(malformed.frames.find((f) => f.type === FRAME_RST_STREAM)).toMatchObject({ streamId: 1, code: H2_PROTOCOL_ERROR });

    // the server still serves a well-behaved client
    client = http2.connect(`http://127.0.0.1:${port}`);
    client.on("error", () => {});
    const r = await request(client, "/after", Buffer.from("still here"));
    expect(r.body.toString()).toBe("still here");
  });
});

describe("H2Connection flow control and field blocks, frame by frame", () => {
  const GET = encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]);

  it("follows the peer's SETTINGS_INITIAL_WINDOW_SIZE changes and WINDOW_UPDATEs", async () => {
    const body = Buffer.alloc(300, 0x41);
    server = await startServer((s) => {
      s.onEnd = () => {
        s.respond(RESPONSE);
        s.write(body);
        s.end(TRAILERS);
      };
    });
    const c = await RawClient.connect(server.port);
    try {
      c.socket.write(CLIENT_PREFACE);
      c.send((w) => {
        w.settings([SETTINGS_INITIAL_WINDOW_SIZE, 0]);
        w.headers(1, GET, true, 16384);
      });
      await c.waitFor(() => c.frames.some((f) => f.type === FRAME_HEADERS));
      await new Promise((r) => setTimeout(r, 50));
      expect(c.dataOn(1)).toBe(0); // a zero window: nothing may go
      c.send((w) => w.settings([SETTINGS_INITIAL_WINDOW_SIZE, 100]));
      await c.waitFor(() => c.dataOn(1) === 100);
      await new Promise((r) => setTimeout(r, 50));
      expect(c.dataOn(1)).toBe(100);
      c.send((w) => w.settings([SETTINGS_INITIAL_WINDOW_SIZE, 50])); // the window goes to -50
      c.send((w) => w.windowUpdate(1, 100)); // back to 50
      await c.waitFor(() => c.dataOn(1) === 150);
      c.send((w) => w.windowUpdate(1, 1000));
      await c.waitFor(() => c.frames.filter((f) => f.type === FRAME_HEADERS).length === 2);
      expect(c.dataOn(1)).toBe(300);
      expect(c.frames.filter((f) => f.type === FRAME_HEADERS)[1]!.flags & 1).toBe(1); // trailers end the stream
    } finally {
      c.close();
    }
  });

  it("takes field blocks in HEADERS + CONTINUATION and padded frames from node's client", async () => {
    const c = await setup((s) => {
      const big = s.header("x-big");
      s.onEnd = () => {
        s.respond(encodeHeaderBlock([":status", "200", "x-len", String(big?.length ?? 0)]), true);
      };
    }, {}, {});
    c.destroy();
    client = http2.connect(`http://127.0.0.1:${server!.port}`, { paddingStrategy: http2.constants.PADDING_STRATEGY_MAX });
    client.on("error", () => {});
    const req = client.request({ ":method": "POST", ":path": "/", "x-big": "v".repeat(40000) });
    req.on("error", () => {});
    req.end(Buffer.alloc(1000));
    const len = await new Promise<string | string[] | undefined>((resolve) => req.on("response", (h) => resolve(h["x-len"])));
    expect(len).toBe("40000");
  });

  it("resets a stream whose header list is above MAX_HEADER_LIST_SIZE and goes on", async () => {
    server = await startServer(echo, { maxHeaderListSize: 1000 });
    const c = await RawClient.connect(server.port);
    try {
      c.socket.write(CLIENT_PREFACE);
      c.send((w) => {
        w.settings([]);
        w.headers(1, encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/", "x-big", "v".repeat(2000)]), true, 16384);
        w.headers(3, GET, true, 16384);
      });
      await c.waitFor(() => c.frames.some((f) => f.type === FRAME_HEADERS && f.streamId === 3));
      expect(c.frames.find((f) => f.type === FRAME_RST_STREAM)).toMatchObject({ streamId: 1, code: H2_ENHANCE_YOUR_CALM });
    } finally {
      c.close();
    }
  });

  it("resets malformed requests with PROTOCOL_ERROR (RFC 9113 §8.2, §8.3) and serves the well-formed ones between them", async () => {
    server = await startServer(echo);
    const base = [":method", "POST", ":scheme", "http", ":path", "/"];
    // Each malformed list comes after a well-formed one with the same names, so a name found
    // well-formed once is still checked in its upper-case spelling.
    const malformed: string[][] = [
      [...base, "X-Trace", "1"],
      [":METHOD", "POST", ":scheme", "http", ":path", "/"],
      [...base, ":status", "200"],
      [":method", "POST", ":method", "GET", ":scheme", "http", ":path", "/"],
      [":method", "POST", ":scheme", "http", ":path", "/", ":path", "/again"],
      [":method", "POST", "x-trace", "1", ":scheme", "http", ":path", "/"],
      [...base, "connection", "keep-alive"],
      [...base, "te", "gzip"],
      [":method", "POST", ":scheme", "http"],
      [":method", "POST", ":scheme", "http", ":path", ""],
      [":scheme", "http", ":path", "/"],
      [...base, "", "empty"],
    ];
    const c = await RawClient.connect(server.port);
    try {
      c.socket.write(CLIENT_PREFACE);
      let id = 1;
      const good: number[] = [];
      const bad: number[] = [];
      c.send((w) => {
        w.settings([]);
        for (const fields of malformed) {
          w.headers(id, encodeHeaderBlock([...base, "x-trace", "1", "te", "trailers"]), true, 16384);
          good.push(id);
          id += 2;
          w.headers(id, encodeHeaderBlock(fields), true, 16384);
          bad.push(id);
          id += 2;
        }
      });
      await c.waitFor(() => good.every((g) => c.frames.some((f) => f.type === FRAME_HEADERS && f.streamId === g)));
      for (const b of bad) expect(c.frames.find((f) => f.streamId === b)).toMatchObject({ type: FRAME_RST_STREAM, code: H2_PROTOCOL_ERROR });
      for (const g of good) expect(c.frames.find((f) => f.type === FRAME_RST_STREAM && f.streamId === g)).toBeUndefined();
      expect(c.frames.find((f) => f.type === FRAME_GOAWAY)).toBeUndefined();
    } finally {
      c.close();
    }
  });

  it("resets a stream with FLOW_CONTROL_ERROR when the client sends past its window", async () => {
    server = await startServer((s) => s.pause(), { initialWindowSize: 65535, connectionWindowSize: 1 << 20 }); // paused: no stream credit
    const { frames } = await rawExchange(
      server.port,
      clientBytes((w) => {
        w.headers(1, GET, false, 16384);
        for (let i = 0; i < 5; i++) w.data(1, Buffer.alloc(16000), false); // 80000 > 65535
      }),
      5000,
      (fs) => fs.some((f) => f.type === FRAME_RST_STREAM),
    );
    expect(frames.find((f) => f.type === FRAME_RST_STREAM)).toMatchObject({ streamId: 1, code: H2_FLOW_CONTROL_ERROR });
    expect(frames.find((f) => f.type === FRAME_GOAWAY)).toBeUndefined();
  });
});

describe("H2Connection inbound buffering", () => {
  it("bounds what paused streams hold by the connection window (FLOW_CONTROL_ERROR past it)", async () => {
    server = await startServer((s) => s.pause(), { initialWindowSize: 65535, connectionWindowSize: 100_000 });
    const GET = encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]);
    const { frames } = await rawExchange(
      server.port,
      clientBytes((w) => {
        // three paused streams, each within its own window, together past the connection's
        for (const id of [1, 3, 5]) {
          w.headers(id, GET, false, 16384);
          for (let i = 0; i < 3; i++) w.data(id, Buffer.alloc(16000), false);
        }
      }),
    );
    expect(frames.find((f) => f.type === FRAME_GOAWAY)?.code).toBe(H2_FLOW_CONTROL_ERROR);
  });

  it("credits the windows as a paused stream resumes, so a large upload completes", async () => {
    let received = 0;
    const c = await setup((s) => {
      s.pause();
      const timer = setInterval(() => {
        s.resume();
        s.pause();
      }, 5);
      s.onData = (d) => (received += d.length);
      s.onEnd = () => {
        clearInterval(timer);
        s.respond(RESPONSE, true);
      };
      s.onClose = () => clearInterval(timer);
    }, { initialWindowSize: 65535, connectionWindowSize: 65535 });
    const r = await request(c, "/upload", Buffer.alloc(2 << 20));
    expect(r.status).toBe(200);
    expect(received).toBe(2 << 20);
  });
});

describe("H2Connection against a peer that sends but never reads", () => {
  it("cuts off a PING flood with ENHANCE_YOUR_CALM once its answers pile up", async () => {
    server = await startServer(echo, { closeLingerMs: 100 });
    const c = await RawClient.connect(server.port);
    c.socket.pause(); // never read: our PING ACKs pile up
    c.socket.write(CLIENT_PREFACE);
    c.send((w) => w.settings([]));
    const ping = Buffer.alloc(17 * 100_000);
    for (let i = 0; i < 100_000; i++) Buffer.from([0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]).copy(ping, i * 17);
    const deadline = Date.now() + 20_000;
    let closed = false;
    c.socket.on("close", () => (closed = true));
    while (!closed && Date.now() < deadline) {
      if (!c.socket.write(ping)) await new Promise((r) => setTimeout(r, 5));
      if (server.errors.length > 0) break;
    }
    c.close();
    expect(server.errors.map((e) => (e as { code?: number }).code)).toContain(H2_ENHANCE_YOUR_CALM);
  });
});

describe("H2Connection against a rapid-reset flood", () => {
  it("cuts the connection off with ENHANCE_YOUR_CALM past peerResetsPerSecondMax", async () => {
    let started = 0;
    server = await startServer(() => void started++, { peerResetsPerSecondMax: 50 });
    const GET = encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]);
    const { frames } = await rawExchange(
      server.port,
      clientBytes((w) => {
        for (let id = 1; id < 400; id += 2) {
          w.headers(id, GET, false, 16384);
          w.rstStream(id, H2_CANCEL);
        }
      }),
    );
    expect(frames.find((f) => f.type === FRAME_GOAWAY)?.code).toBe(H2_ENHANCE_YOUR_CALM);
    expect(started).toBeLessThanOrEqual(52);
  });
});

describe("H2Connection protocol errors, table-driven", () => {
  const GET = encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]);
  const cases: { name: string; build: (w: FrameWriter) => void; goaway?: number; rst?: { streamId: number; code: number } }[] = [
    { name: "ENABLE_PUSH 2", build: (w) => w.settings([SETTINGS_ENABLE_PUSH, 2]), goaway: H2_PROTOCOL_ERROR },
    { name: "MAX_FRAME_SIZE too small", build: (w) => w.settings([SETTINGS_MAX_FRAME_SIZE, 16383]), goaway: H2_PROTOCOL_ERROR },
    { name: "MAX_FRAME_SIZE too large", build: (w) => w.settings([SETTINGS_MAX_FRAME_SIZE, 1 << 24]), goaway: H2_PROTOCOL_ERROR },
    { name: "INITIAL_WINDOW_SIZE above 2^31-1", build: (w) => w.settings([SETTINGS_INITIAL_WINDOW_SIZE, 2 ** 31]), goaway: H2_FLOW_CONTROL_ERROR },
    { name: "connection window overflow", build: (w) => w.windowUpdate(0, 2 ** 31 - 1), goaway: H2_FLOW_CONTROL_ERROR },
    {
      name: "stream window overflow",
      build: (w) => {
        w.headers(1, GET, false, 16384);
        w.windowUpdate(1, 2 ** 31 - 1);
      },
      rst: { streamId: 1, code: H2_FLOW_CONTROL_ERROR },
    },
    {
      name: "a frame between HEADERS and CONTINUATION",
      build: (w) => {
        w.raw(FRAME_HEADERS, 0, 1, GET.subarray(0, 1));
        w.ping(false, Buffer.alloc(8));
      },
      goaway: H2_PROTOCOL_ERROR,
    },
    {
      name: "CONTINUATION of another stream",
      build: (w) => {
        w.raw(FRAME_HEADERS, 0, 1, GET.subarray(0, 1));
        w.raw(FRAME_CONTINUATION, FLAG_END_HEADERS, 3, GET.subarray(1));
      },
      goaway: H2_PROTOCOL_ERROR,
    },
    { name: "CONTINUATION without HEADERS", build: (w) => w.raw(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, GET), goaway: H2_PROTOCOL_ERROR },
    { name: "DATA on an idle stream", build: (w) => w.data(7, Buffer.from("x"), false), goaway: H2_PROTOCOL_ERROR },
    { name: "RST_STREAM on an idle stream", build: (w) => w.rstStream(7, 0), goaway: H2_PROTOCOL_ERROR },
    {
      name: "second HEADERS without END_STREAM",
      build: (w) => {
        w.headers(1, GET, false, 16384);
        w.headers(1, encodeHeaderBlock(["x-t", "1"]), false, 16384);
      },
      rst: { streamId: 1, code: H2_PROTOCOL_ERROR },
    },
    {
      name: "pseudo-field in trailers",
      build: (w) => {
        w.headers(1, GET, false, 16384);
        w.headers(1, encodeHeaderBlock([":path", "/x"]), true, 16384);
      },
      rst: { streamId: 1, code: H2_PROTOCOL_ERROR },
    },
    {
      name: "HEADERS depending on itself",
      build: (w) => w.raw(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_PRIORITY, 1, Buffer.concat([Buffer.from([0, 0, 0, 1, 16]), GET])),
      rst: { streamId: 1, code: H2_PROTOCOL_ERROR },
    },
    { name: "no :path", build: (w) => w.headers(1, encodeHeaderBlock([":method", "GET", ":scheme", "http"]), true, 16384), rst: { streamId: 1, code: H2_PROTOCOL_ERROR } },
    {
      name: "connection-specific field",
      build: (w) => w.headers(1, encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/", "connection", "close"]), true, 16384),
      rst: { streamId: 1, code: H2_PROTOCOL_ERROR },
    },
  ];

  for (const tc of cases) {
    it(tc.name, async () => {
      server ??= await startServer((s) => s.pause(), { closeLingerMs: 100 });
      const { frames } = await rawExchange(server.port, clientBytes(tc.build), 5000, (fs) =>
        fs.some((f) => f.type === (tc.goaway !== undefined ? FRAME_GOAWAY : FRAME_RST_STREAM)),
      );
      // (a GOAWAY would come in the same write as the RST_STREAM: one chunk is one flush)
      const goaway = frames.find((f) => f.type === FRAME_GOAWAY);
      if (tc.goaway !== undefined) expect(goaway?.code).toBe(tc.goaway);
      else {
        expect(goaway).toBeUndefined();
        expect(frames.find((f) => f.type === FRAME_RST_STREAM)).toMatchObject(tc.rst!);
      }
    });
  }

  it("takes request trailers and ends the request after them", async () => {
    let trailers: string[] | undefined;
    server = await startServer((s) => {
      s.onEnd = () => {
        trailers = s.trailers;
        s.respond(RESPONSE, true);
      };
    });
    const { frames } = await rawExchange(
      server.port,
      clientBytes((w) => {
        w.headers(1, GET, false, 16384);
        w.data(1, Buffer.from("body"), false);
        w.headers(1, encodeHeaderBlock(["x-trailer", "t"]), true, 16384);
      }),
      5000,
      (fs) => fs.some((f) => f.type === FRAME_HEADERS && f.streamId === 1),
    );
    expect(trailers).toEqual(["x-trailer", "t"]);
    expect(frames.some((f) => f.type === FRAME_HEADERS && f.streamId === 1)).toBe(true);
  });
});

describe("H2Connection SETTINGS acknowledgement", () => {
  it("ends a connection whose peer never acknowledges our SETTINGS with SETTINGS_TIMEOUT", async () => {
    server = await startServer(echo, { settingsAckTimeoutMs: 100, closeLingerMs: 100 });
    const { frames, closed } = await rawExchange(server.port, clientBytes());
    expect(frames.find((f) => f.type === FRAME_GOAWAY)?.code).toBe(H2_SETTINGS_TIMEOUT);
    expect(closed).toBe(true);
  });
});

describe("H2Connection write batching", () => {
  /**
   * The first answer ends in its stream's onEnd (an I/O callback), which then queues a
   * process.nextTick: the events say whether the socket write carrying the answer's trailers was
   * made in that turn, ahead of the tick, or left for the loop's next pass (setImmediate).
   */
  async function answerOrder(concurrent: number): Promise<string[]> {
    const events: string[] = [];
    const held: H2Stream[] = [];
    server = await startServer(
      (stream) => {
        stream.onData = () => {};
        stream.onEnd = () => {
          held.push(stream);
          if (held.length < concurrent) return;
          // the first stream ends while the others are still open (alone when concurrent is 1)
          const first = held.shift()!;
          first.respond(RESPONSE);
          first.end(TRAILERS);
          process.nextTick(() => events.push("tick"));
          for (const s of held) {
            s.respond(RESPONSE);
            setImmediate(() => s.end(TRAILERS));
          }
        };
      },
      {},
      (socket) => {
        const write = socket.write.bind(socket) as (chunk: Buffer, ...rest: unknown[]) => boolean;
        socket.write = ((chunk: Buffer, ...rest: unknown[]) => {
          if (Buffer.from(chunk).includes(Buffer.from(TRAILERS))) events.push("trailers written");
          return write(chunk, ...rest);
        }) as typeof socket.write;
      },
    );
    client = http2.connect(`http://127.0.0.1:${server.port}`);
    client.on("error", () => {});
    const c = client;
    await Promise.all(Array.from({ length: concurrent }, () => request(c, "/", Buffer.from("x"))));
    return events;
  }

  it("writes the last open stream's answer in the turn that ends it", async () => {
    expect(await answerOrder(1)).toEqual(["trailers written", "tick"]);
  });

  it("holds a PING's ack for one loop pass, so the request read with it is served first", async () => {
    const GET = encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"]);
    const events: string[] = [];
    const opaque = Buffer.from("bdp-ping");
    const ackFrame = Buffer.concat([Buffer.from([0, 0, 8, FRAME_PING, 1, 0, 0, 0, 0]), opaque]);
    server = await startServer(
      (stream) => {
        // the request's work is scheduled as a member schedules its Ready (setImmediate)
        stream.onEnd = () =>
          setImmediate(() => {
            events.push("request served");
            stream.respond(RESPONSE, true);
          });
      },
      {},
      (socket) => {
        const write = socket.write.bind(socket) as (chunk: Buffer, ...rest: unknown[]) => boolean;
        socket.write = ((chunk: Buffer, ...rest: unknown[]) => {
          if (Buffer.from(chunk).includes(ackFrame)) events.push("ping acked");
          return write(chunk, ...rest);
        }) as typeof socket.write;
      },
    );
    const c = await RawClient.connect(server.port);
    try {
      c.socket.write(clientBytes());
      await c.waitFor(() => c.frames.some((f) => f.type === FRAME_SETTINGS && (f.flags & 1) === 1));
      await new Promise((r) => setTimeout(r, 20));
      // grpc-go's order: a BDP ping as it read our last answer, then its next request, in one write
      c.send((w) => {
        w.ping(false, opaque);
        w.headers(1, GET, true, 16384);
      });
      await c.waitFor(() => events.length === 2);
      expect(events).toEqual(["request served", "ping acked"]);
      expect(c.frames.some((f) => f.type === FRAME_PING && (f.flags & 1) === 1)).toBe(true);
    } finally {
      c.close();
    }
  });

  it("writes the other connections' output of that turn first, in the order it was produced", async () => {
    const events: string[] = [];
    const marker = Buffer.from("watch-event-marker");
    let watch: H2Stream | undefined;
    server = await startServer(
      (stream) => {
        const path = stream.headers[stream.headers.indexOf(":path") + 1];
        stream.onData = () => {};
        if (path === "/watch") {
          watch = stream;
          stream.respond(RESPONSE);
          return;
        }
        // as a member's Ready after the request was read: the put is applied, its watcher
        // notified, then the put answered, in one turn
        stream.onEnd = () =>
          setImmediate(() => {
            watch!.write(marker);
            stream.respond(RESPONSE);
            stream.end(TRAILERS);
          });
      },
      {},
      (socket) => {
        const write = socket.write.bind(socket) as (chunk: Buffer, ...rest: unknown[]) => boolean;
        socket.write = ((chunk: Buffer, ...rest: unknown[]) => {
          const b = Buffer.from(chunk);
          if (b.includes(marker)) events.push("watch event written");
          if (b.includes(Buffer.from(TRAILERS))) events.push("put answered");
          return write(chunk, ...rest);
        }) as typeof socket.write;
      },
    );
    const watcher = http2.connect(`http://127.0.0.1:${server.port}`);
    watcher.on("error", () => {});
    try {
      const w = watcher.request({ ":method": "POST", ":path": "/watch" });
      w.on("error", () => {});
      await until(() => watch !== undefined);
      client = http2.connect(`http://127.0.0.1:${server.port}`);
      client.on("error", () => {});
      await request(client, "/put", Buffer.from("x"));
      await until(() => events.length === 2);
      expect(events).toEqual(["watch event written", "put answered"]);
    } finally {
      watcher.destroy();
    }
  });

  it("leaves an answer for the loop's next pass while other streams are open, to share their write", async () => {
    expect((await answerOrder(2)).slice(0, 2)).toEqual(["tick", "trailers written"]);
  });
});
