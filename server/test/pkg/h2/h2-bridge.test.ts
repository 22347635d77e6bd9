/**
 * H2Bridge between our H2Connection and a plain node:http2 server: a response whose headers,
 * data and end come in one read arrives whole (node emits 'response' a tick after the data it
 * read with it); a trailers-only answer stays one HEADERS; request headers (a URL-shaped
 * :authority cut to its host, repeated fields) and bodies reach the server; a server's reset
 * reaches the client with its code.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http2 from "node:http2";
import net from "node:net";
import { H2Connection } from "../../../src/pkg/h2/h2-connection.js";
import { H2Bridge, plainAuthority } from "../../../src/pkg/h2/h2-bridge.js";

interface Answer {
  headers: http2.IncomingHttpHeaders;
  flags: number;
  body: string;
  trailers?: http2.IncomingHttpHeaders;
  rstCode: number;
}

describe("H2Bridge", () => {
  let backend: http2.Http2Server;
  let listener: net.Server;
  let port: number;
  const seen: Array<{ headers: http2.IncomingHttpHeaders; body: string }> = [];

  beforeAll(async () => {
    backend = http2.createServer();
    backend.on("stream", (stream, headers) => {
      let body = "";
      stream.on("error", () => {});
      stream.on("data", (d: Buffer) => (body += d.toString()));
      stream.on("end", () => {
        seen.push({ headers, body });
        switch (headers[":path"]) {
          case "/whole": // headers, data and end in one write
            stream.respond({ ":status": 200, "x-a": "1" });
            stream.end(`echo:${body}`);
            break;
          case "/trailers-only":
            stream.respond({ ":status": 200, "grpc-status": "5" }, { endStream: true });
            break;
          case "/trailers":
            stream.respond({ ":status": 200 }, { waitForTrailers: true });
            stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
            stream.end("x".repeat(100_000));
            break;
          case "/reset":
            stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
            break;
        }
      });
    });
    listener = net.createServer((socket) => {
      const bridge = new H2Bridge({}, { connect: (end) => backend.emit("connection", end) });
      new H2Connection({}, { socket, handlers: { onStream: (s) => bridge.forward(s), onClose: () => bridge.close() } });
    });
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    port = (listener.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    backend.close();
  });

  const request = (path: string, body: string, headers: http2.OutgoingHttpHeaders = {}, shared?: http2.ClientHttp2Session) =>
    new Promise<Answer>((resolve, reject) => {
      const session = shared ?? http2.connect(`http://127.0.0.1:${port}`);
      if (shared === undefined) session.on("error", reject);
      const req = session.request({ ":method": "POST", ":path": path, ...headers });
      const answer: Answer = { headers: {}, flags: 0, body: "", rstCode: 0 };
      req.on("response", (h, flags) => {
        answer.headers = h;
        answer.flags = flags;
      });
      req.on("data", (d: Buffer) => (answer.body += d.toString()));
      req.on("trailers", (t) => (answer.trailers = t));
      req.on("error", () => {});
      req.on("close", () => {
        answer.rstCode = req.rstCode ?? 0;
        if (shared === undefined) session.close();
        resolve(answer);
      });
      req.end(body);
    });

  it("delivers responses whose headers, data and end come in one read", async () => {
    // many streams at once: the bridge's session reads several answers in one chunk
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => request("/whole", `m${i}`, {}, session)));
      answers.forEach((a, i) => {
        expect(a.headers[":status"]).toBe(200);
        expect(a.headers["x-a"]).toBe("1");
        expect(a.body).toBe(`echo:m${i}`);
        expect(a.rstCode).toBe(0);
      });
    } finally {
      session.close();
    }
  });

  it("keeps a trailers-only answer one HEADERS frame, and trailers after data", async () => {
    const only = await request("/trailers-only", "");
    expect(only.headers["grpc-status"]).toBe("5");
    expect(only.flags & http2.constants.NGHTTP2_FLAG_END_STREAM).toBeTruthy();
    const t = await request("/trailers", "");
    expect(t.body.length).toBe(100_000);
    expect(t.trailers?.["grpc-status"]).toBe("0");
  });

  it("passes request headers on, a URL-shaped :authority cut to its host", async () => {
    await request("/whole", "body", { ":authority": "http://127.0.0.1:2379", "x-r": ["a", "b"] });
    const last = seen[seen.length - 1]!;
    expect(last.headers[":authority"]).toBe("127.0.0.1:2379");
    expect(last.headers["x-r"]).toBe("a, b");
    expect(last.body).toBe("body");
    expect(plainAuthority("host:1")).toBe("host:1");
    expect(plainAuthority("unix:///tmp/x")).toBe("localhost");
  });

  it("passes a server's reset to the client with its code", async () => {
    const a = await request("/reset", "");
    expect(a.rstCode).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  });
});
