/**
 * The message stream and msgappv2 framings against etcd 3.4's encoders and decoder (golden cases
 * from golden/gen-golden.sh), fed in random cuts; and their bounds on hostile input.
 */
import { describe, expect, it } from "vitest";
import {
  ErrExceedSizeLimit, ErrUnexpectedEOF, MessageStreamDecoder, encodeMessageFrame,
} from "../../src/rafthttp/message-stream.js";
import { MsgAppV2Decoder, MsgAppV2Encoder, MsgAppV2FrameError } from "../../src/rafthttp/msgapp-v2.js";
import { RaftWireDecodeError } from "../../src/rafthttp/message-codec.js";
import type { Message } from "../../src/raft/types.js";
import { fromJson, golden, hex, normalize, toHex } from "./golden.js";

function seeded(): { seed: number; rnd: () => number } {
  const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
  let x = seed;
  return {
    seed,
    rnd: () => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x / 2147483648;
    },
  };
}

/** Feeds `bytes` to `push` in random cuts (single bytes included); returns all it returned. */
function feed(bytes: Uint8Array, push: (c: Uint8Array) => Message[], rnd: () => number): Message[] {
  const out: Message[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const n = rnd() < 0.3 ? 1 : 1 + Math.floor(rnd() * 200);
    out.push(...push(bytes.subarray(pos, Math.min(bytes.length, pos + n))));
    pos += n;
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

describe("message stream", () => {
  it("frames every golden message as etcd's messageEncoder does", () => {
    for (const c of golden.encode) expect(toHex(encodeMessageFrame(fromJson(c.message))), c.name).toBe(c.frame);
  });

  it("decodes etcd's frames cut anywhere", () => {
    const { seed, rnd } = seeded();
    const stream = concat(golden.encode.map((c) => hex(c.frame)));
    const dec = new MessageStreamDecoder();
    try {
      const got = feed(stream, (c) => dec.push(c), rnd).map(normalize);
      expect(got).toEqual(golden.encode.map((c) => normalize(fromJson(c.message))));
      expect(() => dec.end()).not.toThrow();
    } catch (err) {
      console.error(`seed=${seed}`);
      throw err;
    }
  });

  it("refuses a length above the limit before reading the frame, with etcd's error", () => {
    const dec = new MessageStreamDecoder();
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64BE(512n * 1024n * 1024n + 1n);
    expect(() => dec.push(prefix)).toThrow(ErrExceedSizeLimit);
    expect(() => new MessageStreamDecoder().push(Buffer.from("ffffffffffffffff", "hex"))).toThrow("rafthttp: error limit exceeded");
    const small = new MessageStreamDecoder({ limit: 10 });
    expect(() => small.push(encodeMessageFrame(fromJson(golden.encode[1]!.message)))).toThrow(ErrExceedSizeLimit);
  });

  it("holds the bytes received, not the length announced", () => {
    const dec = new MessageStreamDecoder();
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64BE(400n * 1024n * 1024n);
    expect(dec.push(prefix)).toEqual([]);
    expect(dec.push(new Uint8Array(10))).toEqual([]);
    expect(dec.pending).toBe(18);
    expect(() => dec.end()).toThrow(ErrUnexpectedEOF);
  });

  it("refuses garbage frames with RaftWireDecodeError", () => {
    const dec = new MessageStreamDecoder();
    expect(() => dec.push(Buffer.from("00000000000000020c00", "hex"))).toThrow(RaftWireDecodeError);
  });
});

describe("msgappv2 stream", () => {
  for (const c of golden.msgappv2) {
    it(`${c.name}: the encoder writes etcd's frames`, () => {
      const enc = new MsgAppV2Encoder();
      c.input.forEach((j, i) => expect(toHex(enc.encode(fromJson(j))), `message ${i}`).toBe(c.frames[i]));
    });

    it(`${c.name}: the decoder gives what etcd's decoder gives, cut anywhere`, () => {
      const { seed, rnd } = seeded();
      const dec = new MsgAppV2Decoder({ local: BigInt(c.local), remote: BigInt(c.remote) });
      try {
        const got = feed(concat(c.frames.map(hex)), (ch) => dec.push(ch), rnd).map(normalize);
        expect(got).toEqual(c.output.map((j) => normalize(fromJson(j))));
        expect(() => dec.end()).not.toThrow();
      } catch (err) {
        console.error(`seed=${seed}`);
        throw err;
      }
    });
  }

  it("uses compact frames for consecutive appends", () => {
    const frames = golden.msgappv2.flatMap((c) => c.frames);
    expect(frames.some((f) => f.startsWith("01"))).toBe(true);
    expect(frames.some((f) => f === "00")).toBe(true);
  });

  it("refuses an unknown frame type with etcd's text", () => {
    const dec = new MsgAppV2Decoder({ local: 1n, remote: 2n });
    expect(() => dec.push(Uint8Array.of(7))).toThrow(new MsgAppV2FrameError("failed to parse type 7 in msgappv2 stream"));
  });

  it("bounds entry counts and sizes without allocating for them", () => {
    const count = new MsgAppV2Decoder({ local: 1n, remote: 2n });
    expect(() => count.push(Buffer.from("01ffffffffffffffff", "hex"))).toThrow(ErrExceedSizeLimit);
    const size = new MsgAppV2Decoder({ local: 1n, remote: 2n, limit: 1000 });
    expect(() => size.push(Buffer.from("01" + "0000000000000001" + "00000000000f0000", "hex"))).toThrow(ErrExceedSizeLimit);
    const full = new MsgAppV2Decoder({ local: 1n, remote: 2n });
    expect(() => full.push(Buffer.from("02" + "8000000000000000", "hex"))).toThrow(ErrExceedSizeLimit);
  });

  it("ends with ErrUnexpectedEOF inside a frame", () => {
    const dec = new MsgAppV2Decoder({ local: 1n, remote: 2n });
    dec.push(Buffer.from("0100000000", "hex"));
    expect(() => dec.end()).toThrow(ErrUnexpectedEOF);
  });

  it("refuses a garbage entry with RaftWireDecodeError", () => {
    const dec = new MsgAppV2Decoder({ local: 1n, remote: 2n });
    expect(() => dec.push(Buffer.from("01" + "0000000000000001" + "0000000000000001" + "0c" + "0000000000000000", "hex"))).toThrow(
      RaftWireDecodeError,
    );
  });
});
