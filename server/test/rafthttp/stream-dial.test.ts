/**
 * The stream reader's own HTTP/1.1 client (stream-dial.ts) against real sockets: answers written
 * byte for byte by a TCP server (split at every position, to exercise each parser state across
 * reads), and against node:http's server, whose chunked answers the peer server sends.
 */
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { dialStream, StreamDialError } from "../../src/rafthttp/stream-dial.js";

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A TCP server that answers each connection by writing `parts` one after another, a few ms apart. */
async function rawServer(parts: (string | Buffer)[], opts: { end?: boolean } = {}): Promise<{ url: string; requests: string[] }> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let request = "";
    let answered = false;
    socket.on("error", () => undefined);
    socket.on("data", async (d) => {
      request += d.toString("latin1");
      if (answered || !request.includes("\r\n\r\n")) return;
      answered = true;
      requests.push(request);
      for (const p of parts) {
        if (socket.destroyed) return;
        socket.write(p);
        await new Promise((r) => setTimeout(r, 2));
      }
      if (opts.end) socket.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closers.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/raft/stream/message/1`, requests };
}

async function body(url: string): Promise<{ status: number; data: string; outcome: string }> {
  const answer = await dialStream(url, { "X-Raft-To": "2" }, { timeoutMs: 2000 });
  const parts: Buffer[] = [];
  const outcome = await answer.read((d) => parts.push(Buffer.from(d))).then(
    () => "ended",
    (err: Error) => `broke: ${err.message}`,
  );
  return { status: answer.status, data: Buffer.concat(parts).toString("latin1"), outcome };
}

const HEAD = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nX-Server-Version: 3.4.23\r\n\r\n";
const CHUNKS = "5\r\nhello\r\n1;ext=1\r\n,\r\nb\r\n 0123456789\r\n0\r\nTrailer: x\r\n\r\n";

describe("dialStream", () => {
  it("sends a GET with its headers and the host, asking the peer to close once done", async () => {
    const { url, requests } = await rawServer([HEAD, "0\r\n\r\n"]);
    await body(url);
    expect(requests[0]).toMatch(/^GET \/raft\/stream\/message\/1 HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\nX-Raft-To: 2\r\nConnection: close\r\n\r\n$/);
  });

  it("reads a chunked body whatever the reads it arrives in", async () => {
    const whole = HEAD + CHUNKS;
    for (let cut = 1; cut < whole.length; cut++) {
      const { url } = await rawServer([whole.slice(0, cut), whole.slice(cut)]);
      const got = await body(url);
      expect({ cut, ...got }).toEqual({ cut, status: 200, data: "hello, 0123456789", outcome: "ended" });
    }
  });

  it("reads the head's fields, skips an informational head, and hands on bytes that came with the head", async () => {
    const { url } = await rawServer(["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "0\r\n\r\n"]);
    const answer = await dialStream(url, {}, { timeoutMs: 2000 });
    expect(answer.status).toBe(200);
    expect(answer.headers["x-a"]).toBe("1, 2");
    await new Promise((r) => setTimeout(r, 20)); // the body's bytes arrive before anyone reads them
    const parts: string[] = [];
    await answer.read((d) => parts.push(Buffer.from(d).toString()));
    expect(parts.join("")).toBe("abc");
  });

  it("reads a body of a Content-Length, and one that runs to the close", async () => {
    const sized = await rawServer(["HTTP/1.1 412 Precondition Failed\r\nContent-Length: 22\r\n\r\nincompatible version\n", "\nmore than the length"]);
    const a = await dialStream(sized.url, {}, { timeoutMs: 2000 });
    expect([a.status, await a.text(4096)]).toEqual([412, "incompatible version\n\n"]);

    const closed = await rawServer(["HTTP/1.0 200 OK\r\n\r\nab", "cd"], { end: true });
    expect(await body(closed.url)).toEqual({ status: 200, data: "abcd", outcome: "ended" });
  });

  it("breaks on a chunked body cut short, and on malformed framing", async () => {
    const cut = await rawServer([HEAD, "5\r\nhel"], { end: true });
    expect(await body(cut.url)).toMatchObject({ data: "hel", outcome: "broke: the peer closed the stream" });

    const badSize = await rawServer([HEAD, "5\r\nhello\r\nzz\r\n"]);
    expect((await body(badSize.url)).outcome).toBe('broke: malformed chunk size "zz"');

    const noCrlf = await rawServer([HEAD, "5\r\nhelloX\r\n"]);
    expect((await body(noCrlf.url)).outcome).toBe("broke: a chunk's data is not followed by CRLF");

    const longLine = await rawServer([HEAD, "1;" + "x".repeat(5000)]);
    expect((await body(longLine.url)).outcome).toBe("broke: a chunk line is too long");
  });

  it("refuses what is not an HTTP answer, a head that never comes, and a closed port", async () => {
    const notHttp = await rawServer(["SSH-2.0-OpenSSH\r\n\r\n"]);
    await expect(dialStream(notHttp.url, {}, { timeoutMs: 2000 })).rejects.toThrow(/malformed HTTP response "SSH-2.0-OpenSSH"/);

    const silent = await rawServer([]);
    const err = await dialStream(silent.url, {}, { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamDialError);
    expect((err as Error).message).toMatch(/: timed out$/);

    const closedEarly = await rawServer(["HTTP/1.1 200 OK\r\n"], { end: true });
    await expect(dialStream(closedEarly.url, {}, { timeoutMs: 2000 })).rejects.toThrow(StreamDialError);

    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    await expect(dialStream(`http://127.0.0.1:${port}/x`, {}, { timeoutMs: 2000 })).rejects.toThrow(/ECONNREFUSED/);
  });

  it("reads node:http's chunked answer as it is written, until the answer ends", async () => {
    let answer!: http.ServerResponse;
    const server = http.createServer((_req, res) => {
      res.statusCode = 200;
      res.flushHeaders();
      answer = res;
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    closers.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const a = await dialStream(`http://127.0.0.1:${(server.address() as AddressInfo).port}/s`, {}, { timeoutMs: 2000 });
    expect([a.status, a.headers["transfer-encoding"]]).toEqual([200, "chunked"]);
    const parts: string[] = [];
    let notify: () => void = () => undefined;
    const done = a.read((d) => {
      parts.push(Buffer.from(d).toString());
      notify();
    });
    for (const text of ["one", "two", "x".repeat(70000)]) {
      const arrived = new Promise<void>((r) => (notify = () => parts.join("").endsWith(text) && r()));
      answer.write(text);
      await arrived;
    }
    answer.end();
    await done;
    expect(parts.join("")).toBe("onetwo" + "x".repeat(70000));
  });
});
