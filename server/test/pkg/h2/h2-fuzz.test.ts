import * as http2 from "node:http2";
import { describe, expect, it } from "vitest";
import { FrameParser, type FrameSink, FrameWriter, H2ConnectionError } from "../../../src/pkg/h2/frame-codec.js";
import { HpackDecoder, HpackError, encodeHeaderBlock } from "../../../src/pkg/h2/hpack.js";
import { RawClient, startServer } from "./peer.js";
import { seededUniform } from "../../../../test/harness/seeded-random.js";

const SEED = Number(process.env.SEED ?? Date.now() % 1_000_000);
const RUNS = Number(process.env.RUNS ?? 1);

function withSeed(body: (rand: () => number) => void | Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body(seededUniform(SEED));
    } catch (err) {
      console.log(`seed=${SEED}`);
      throw err;
    }
  };
}

const randomBytes = (rand: () => number, n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));

const nullSink: FrameSink = {
  onData: () => {},
  onHeaders: () => {},
  onContinuation: () => {},
  onPriority: () => {},
  onRstStream: () => {},
  onSettings: () => {},
  onPing: () => {},
  onGoaway: () => {},
  onWindowUpdate: () => {},
  onUnknown: () => {},
  onStreamError: () => {},
};

describe("pkg/h2 on random input (seeded)", () => {
  it(
    "the HPACK decoder only ever returns or throws HpackError",
    withSeed((rand) => {
      const valid = encodeHeaderBlock([":method", "POST", ":path", "/etcdserverpb.KV/Range", "te", "trailers", "x-k", "v".repeat(40)]);
      for (let i = 0; i < 3000 * RUNS; i++) {
        const d = new HpackDecoder();
        // mutate a valid block, or pure noise
        const block = rand() < 0.5 ? Buffer.from(valid) : randomBytes(rand, Math.floor(rand() * 64));
        for (let m = 0; m < 3; m++) if (block.length > 0) block[Math.floor(rand() * block.length)] = Math.floor(rand() * 256);
        try {
          const { fields } = d.decode(block);
          expect(fields.length % 2).toBe(0);
        } catch (err) {
          expect(err).toBeInstanceOf(HpackError);
        }
      }
    }),
  );

  it(
    "the frame parser only ever returns or throws H2ConnectionError, however the bytes are split",
    withSeed((rand) => {
      for (let i = 0; i < 2000 * RUNS; i++) {
        const w = new FrameWriter();
        const n = 1 + Math.floor(rand() * 5);
        for (let f = 0; f < n; f++) w.raw(Math.floor(rand() * 12), Math.floor(rand() * 256), Math.floor(rand() * 8), randomBytes(rand, Math.floor(rand() * 40)));
        const bytes = Buffer.concat(w.take());
        const p = new FrameParser(nullSink);
        try {
          let pos = 0;
          while (pos < bytes.length) {
            const step = 1 + Math.floor(rand() * 20);
            p.push(bytes.subarray(pos, pos + step));
            pos += step;
          }
        } catch (err) {
          expect(err).toBeInstanceOf(H2ConnectionError);
        }
      }
    }),
  );

  it(
    "a live connection fed random frames ends with GOAWAY or goes on; the server keeps serving",
    withSeed(async (rand) => {
      const server = await startServer((s) => {
        s.onEnd = () => {
          s.respond(encodeHeaderBlock([":status", "200"]));
          s.end();
        };
      }, { closeLingerMs: 100 });
      try {
        for (let i = 0; i < 30 * RUNS; i++) {
          const c = await RawClient.connect(server.port);
          c.socket.write(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"));
          c.send((w) => {
            w.settings([]);
            for (let f = 0; f < 8; f++) {
              const type = Math.floor(rand() * 10);
              const stream = type === 4 || type === 6 || type === 7 ? 0 : 1 + 2 * Math.floor(rand() * 3);
              const payload =
                type === 1 && rand() < 0.5
                  ? encodeHeaderBlock([":method", "GET", ":scheme", "http", ":path", "/"])
                  : randomBytes(rand, Math.floor(rand() * 24));
              w.raw(type, Math.floor(rand() * 64), rand() < 0.1 ? Math.floor(rand() * 8) : stream, payload);
            }
          });
          await c.waitClosed(150);
          c.close();
        }
        const client = http2.connect(`http://127.0.0.1:${server.port}`);
        client.on("error", () => {});
        const status = await new Promise<number>((resolve) => {
          const req = client.request({ ":path": "/" });
          req.on("response", (h) => resolve(Number(h[":status"])));
          req.on("error", () => {});
          req.end();
        });
        client.destroy();
        expect(status).toBe(200);
        // only protocol errors, never a bug surfacing as an exception of another kind
        for (const err of server.errors) expect(err).toBeInstanceOf(H2ConnectionError);
      } finally {
        await server.close();
      }
    }),
  );
});
