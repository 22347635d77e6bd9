import * as grpc from "@grpc/grpc-js";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type * as net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import * as tls from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { H2Connection } from "../../../src/pkg/h2/h2-connection.js";
import { EchoClient, type EchoClientInstance, call, chatClosed, echoClient, grpcEchoStream, listenOurs } from "./grpc-echo.js";

let server: net.Server | undefined;
let client: EchoClientInstance | undefined;
afterEach(async () => {
  client?.close();
  client = undefined;
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

describe("gRPC unary over pkg/h2, called by @grpc/grpc-js", () => {
  it("echoes small and large messages, many at once, and reports a trailers-only status", async () => {
    server = await listenOurs();
    client = echoClient((server.address() as net.AddressInfo).port);
    const c = client;
    expect((await call(c, "Echo", Buffer.from("hello"))).toString()).toBe("hello");
    expect((await call(c, "Echo", Buffer.alloc(0))).length).toBe(0);
    const big = Buffer.alloc(3 << 20, 0x5a);
    expect((await call(c, "Echo", big)).equals(big)).toBe(true);
    const many = await Promise.all(Array.from({ length: 200 }, (_, i) => call(c, "Echo", Buffer.from(`m${i}`))));
    expect(many.map((b) => b.toString())).toEqual(Array.from({ length: 200 }, (_, i) => `m${i}`));
    const err = await call(c, "Missing", Buffer.from("x")).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    expect((err as grpc.ServiceError).details).toBe("no such thing");
  });
});

describe("gRPC bidi streaming over pkg/h2, called by @grpc/grpc-js", () => {
  it("echoes a thousand messages as they come, ends with OK, and closes a cancelled call", async () => {
    server = await listenOurs();
    client = echoClient((server.address() as net.AddressInfo).port);
    const chat = client.Chat();
    const got: string[] = [];
    chat.on("data", (b: Buffer) => got.push(b.toString()));
    const status = new Promise<grpc.StatusObject>((resolve) => chat.on("status", resolve));
    chat.on("error", () => {});
    for (let i = 0; i < 1000; i++) chat.write(Buffer.from(`msg-${i}-${"x".repeat(i % 50)}`));
    chat.end();
    expect((await status).code).toBe(grpc.status.OK);
    expect(got.length).toBe(1000);
    expect(got[999]).toBe(`msg-999-${"x".repeat(999 % 50)}`);

    const cancelled = client.Chat();
    cancelled.on("error", () => {});
    cancelled.write(Buffer.from("hi"));
    await new Promise((r) => cancelled.once("data", r));
    const before = chatClosed.length;
    cancelled.cancel();
    for (let i = 0; i < 1000 && chatClosed.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    // node's client half-closes (empty DATA with END_STREAM) before its RST_STREAM(CANCEL), so
    // the echo may have ended the stream itself first (0); either way it is closed
    expect(chatClosed.length).toBe(before + 1);
    expect([0, 8]).toContain(chatClosed.at(-1));
    expect((await call(client, "Echo", Buffer.from("after"))).toString()).toBe("after");
  });
});

describe("gRPC unary over pkg/h2 on TLS (ALPN h2)", () => {
  it("serves a grpc-js client over TLS", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-h2-tls-"));
    try {
      execFileSync(
        "openssl",
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out", "c.pem", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        { cwd: dir, stdio: "ignore" },
      );
      const key = readFileSync(path.join(dir, "k.pem"));
      const cert = readFileSync(path.join(dir, "c.pem"));
      const tlsServer = tls.createServer({ key, cert, ALPNProtocols: ["h2"] }, (socket) => {
        new H2Connection({}, { socket, handlers: { onStream: grpcEchoStream } });
      });
      server = tlsServer;
      await new Promise<void>((resolve) => tlsServer.listen(0, "127.0.0.1", resolve));
      const port = (tlsServer.address() as net.AddressInfo).port;
      client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(cert), { "grpc.ssl_target_name_override": "localhost" }) as unknown as EchoClientInstance;
      const big = Buffer.alloc(1 << 20, 0x33);
      expect((await call(client, "Echo", Buffer.from("secure"))).toString()).toBe("secure");
      expect((await call(client, "Echo", big)).equals(big)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
