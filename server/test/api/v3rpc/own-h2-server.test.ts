/**
 * OwnH2Server (ETCD_TS_H2=own) in front of a grpc-js server, as etcdmain wires it: lean methods
 * served on pkg/h2's streams, every other method bridged to grpc-js with the client's peer
 * address, large answers and requests through the bridge's flow control both ways, a client's
 * cancellation reaching the grpc-js handler, graceful close (GOAWAY, the open call finishes),
 * keepalive PINGs that cut a client that never answers them; bridges over in-memory pairs and
 * over the private Unix socket (start()).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { KVService, PutRequest, RangeRequest, type PutResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { unary } from "../../../src/api/v3rpc/grpc-util.js";
import { LeanUnaryServer } from "../../../src/api/v3rpc/lean-unary.js";
import { installLeanPath } from "../../../src/api/v3rpc/lean-path.js";
import { carryBridgedPeers, OwnH2Server } from "../../../src/api/v3rpc/own-h2-server.js";
import { createLogger } from "../../../src/pkg/logger.js";

const header = { clusterId: 1n, memberId: 2n, revision: 3n, raftTerm: 4n };
const id = (b: Buffer): Buffer => b;
const method = (path: string, requestStream: boolean, responseStream: boolean) => ({
  path, requestStream, responseStream, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id,
});
/** A service only grpc-js serves (every call bridged). */
const TestService = {
  peer: method("/test.Bridge/Peer", false, false),
  slow: method("/test.Bridge/Slow", false, false),
  hang: method("/test.Bridge/Hang", false, false),
  download: method("/test.Bridge/Download", false, true),
  upload: method("/test.Bridge/Upload", true, false),
} as unknown as ServiceDefinition;

const MIB = 1 << 20;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(predicate: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate() && Date.now() < deadline) await sleep(10);
  return predicate();
}

describe.each([["in-memory pairs", false], ["the private Unix socket", true]])("OwnH2Server, bridged through %s", (_name, native) => {
  let grpcServer: grpc.Server;
  let own: OwnH2Server;
  let listener: net.Server;
  let port: number;
  let hangCancelled = 0;
  let uploaded = 0;

  beforeAll(async () => {
    grpcServer = new grpc.Server({ "grpc.enable_channelz": 0, "grpc.max_receive_message_length": 4 * MIB });
    const kv = { put: unary(async (_req: PutRequest): Promise<PutResponse> => ({ header, prevKv: undefined })) };
    grpcServer.addService(KVService as ServiceDefinition, kv as unknown as UntypedServiceImplementation);
    grpcServer.addService(TestService, {
      peer: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(call.getPeer())),
      slow: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => setTimeout(() => cb(null, Buffer.from("slow done")), 300),
      hang: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => call.on("cancelled", () => hangCancelled++),
      download: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        let sent = 0;
        const chunk = Buffer.alloc(64 * 1024, 7);
        const more = (): void => {
          while (sent < 8 * MIB) {
            sent += chunk.length;
            if (!call.write(chunk)) {
              call.once("drain", more);
              return;
            }
          }
          call.end();
        };
        more();
      },
      upload: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        let n = 0;
        call.on("data", (b: Buffer) => (n += b.length));
        call.on("end", () => {
          uploaded = n;
          cb(null, Buffer.from(String(n)));
        });
      },
    } as unknown as UntypedServiceImplementation);
    const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const lean = new LeanUnaryServer({ maxReceiveMessageBytes: 4 * MIB, maxSendMessageBytes: 2 ** 31 - 1 }, { services: [{ definition: KVService as ServiceDefinition, implementation: kv as unknown as UntypedServiceImplementation }] });
    expect(installLeanPath(grpcServer, [lean]).installed).toBe(true);
    own = new OwnH2Server(
      { maxConcurrentStreams: 100, keepaliveTimeMs: 200, keepaliveTimeoutMs: 300 },
      { takers: [lean], connectGrpc: (c) => injector.injectConnection(c), logger: createLogger({ level: "error" }) },
    );
    if (native) expect(await own.start()).toBe(true);
    else expect(carryBridgedPeers(grpcServer)).toBe(true);
    listener = net.createServer((socket) => own.serve(socket));
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    port = (listener.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    own?.destroy();
    grpcServer?.forceShutdown();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  });

  const KvClient = grpc.makeGenericClientConstructor(KVService as unknown as ServiceDefinition, "KV");
  const TestClient = grpc.makeGenericClientConstructor(TestService, "Test");
  type Fn = (...args: unknown[]) => grpc.ClientUnaryCall & grpc.ClientReadableStream<Buffer> & grpc.ClientWritableStream<Buffer>;
  const fn = (client: grpc.Client, name: string): Fn => (client as unknown as Record<string, Fn>)[name]!.bind(client);
  const call = (client: grpc.Client, name: string, req: unknown = Buffer.alloc(0)) =>
    new Promise<{ err?: grpc.ServiceError; value?: unknown }>((resolve) => fn(client, name)(req, (err: grpc.ServiceError | null, value: unknown) => resolve(err ? { err } : { value })));

  it("serves lean methods on its own streams and bridges the rest with the client's address", async () => {
    const kv = new KvClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const test = new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const taken = own.counts.taken;
      const put = await call(kv, "put", PutRequest.fromPartial({ key: Buffer.from("k"), value: Buffer.from("v") }));
      expect(put.err).toBeUndefined();
      expect(own.counts.taken).toBe(taken + 1);
      const bridged = own.counts.bridged;
      const peer = await call(test, "peer");
      expect(peer.err).toBeUndefined();
      expect(String(peer.value)).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(own.counts.bridged).toBe(bridged + 1);
      const missing = await call(kv, "range", RangeRequest.fromPartial({}));
      expect(missing.err?.code).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      kv.close();
      test.close();
    }
  });

  it("carries 8 MiB each way through the bridge", async () => {
    const test = new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const received = await new Promise<number>((resolve, reject) => {
        let n = 0;
        const stream = fn(test, "download")(Buffer.alloc(0));
        stream.on("data", (b: Buffer) => (n += b.length));
        stream.on("error", reject);
        stream.on("end", () => resolve(n));
      });
      expect(received).toBe(8 * MIB);
      const answer = await new Promise<string>((resolve, reject) => {
        const stream = fn(test, "upload")((err: grpc.ServiceError | null, value: Buffer) => (err ? reject(err) : resolve(String(value))));
        const chunk = Buffer.alloc(256 * 1024, 1);
        let i = 0;
        const more = (): void => {
          while (i < 32) {
            i++;
            if (!stream.write(chunk)) {
              stream.once("drain", more);
              return;
            }
          }
          stream.end();
        };
        more();
      });
      expect(answer).toBe(String(8 * MIB));
      expect(uploaded).toBe(8 * MIB);
    } finally {
      test.close();
    }
  });

  it("passes a client's cancellation to the grpc-js handler", async () => {
    const test = new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const before = hangCancelled;
      const pending = fn(test, "hang")(Buffer.alloc(0), () => {});
      await sleep(100);
      pending.cancel();
      expect(await until(() => hangCancelled > before)).toBe(true);
    } finally {
      test.close();
    }
  });

  it("cuts a connection that does not answer its keepalive PINGs", async () => {
    const socket = net.connect(port, "127.0.0.1");
    let closed = false;
    socket.on("close", () => (closed = true));
    socket.on("error", () => {});
    socket.on("data", () => {}); // reads, never answers
    // the preface and an empty SETTINGS, then silence
    socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
    expect(await until(() => closed, 5000)).toBe(true);
  });

  it("closes gracefully: GOAWAY, the open call finishes, the connection ends", async () => {
    const test = new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      // the connection is up before the slow call
      expect((await call(test, "peer")).err).toBeUndefined();
      const slow = call(test, "slow");
      await sleep(50);
      own.close();
      const answer = await slow;
      expect(answer.err).toBeUndefined();
      expect(String(answer.value)).toBe("slow done");
      expect(await until(() => own.connectionCount === 0)).toBe(true);
    } finally {
      test.close();
    }
  });
});
