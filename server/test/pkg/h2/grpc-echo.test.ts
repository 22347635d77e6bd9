import * as grpc from "@grpc/grpc-js";
import type * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type EchoClientInstance, call, echoClient, listenOurs } from "./grpc-echo.js";

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
