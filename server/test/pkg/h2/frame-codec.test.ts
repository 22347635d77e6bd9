import { describe, expect, it } from "vitest";
import {
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  FRAME_DATA,
  FRAME_HEADERS,
  FRAME_PING,
  FRAME_PRIORITY,
  FRAME_PUSH_PROMISE,
  FRAME_RST_STREAM,
  FRAME_SETTINGS,
  FRAME_WINDOW_UPDATE,
  FrameParser,
  type FrameSink,
  FrameWriter,
  H2ConnectionError,
  H2StreamError,
  H2_FRAME_SIZE_ERROR,
  H2_PROTOCOL_ERROR,
} from "../../../src/pkg/h2/frame-codec.js";

/** A sink that records every call as a readable line. */
function recorder(): { sink: FrameSink; log: string[] } {
  const log: string[] = [];
  const sink: FrameSink = {
    onData: (id, es, data, flow) => log.push(`DATA ${id} es=${es} ${data.toString("latin1")} flow=${flow}`),
    onHeaders: (id, es, eh, frag, dep) => log.push(`HEADERS ${id} es=${es} eh=${eh} ${frag.toString("hex")} dep=${dep}`),
    onContinuation: (id, eh, frag) => log.push(`CONTINUATION ${id} eh=${eh} ${frag.toString("hex")}`),
    onPriority: (id, dep) => log.push(`PRIORITY ${id} dep=${dep}`),
    onRstStream: (id, code) => log.push(`RST ${id} ${code}`),
    onSettings: (ack, s) => log.push(`SETTINGS ack=${ack} ${s.join(",")}`),
    onPing: (ack, opaque) => log.push(`PING ack=${ack} ${opaque.toString("hex")}`),
    onGoaway: (last, code, debug) => log.push(`GOAWAY ${last} ${code} ${debug.toString()}`),
    onWindowUpdate: (id, inc) => log.push(`WINDOW_UPDATE ${id} ${inc}`),
    onUnknown: (type, id) => log.push(`UNKNOWN ${type} ${id}`),
    onStreamError: (err) => log.push(`STREAM_ERROR ${err.streamId} ${err.code}`),
  };
  return { sink, log };
}

function frames(build: (w: FrameWriter) => void): Buffer {
  const w = new FrameWriter();
  build(w);
  return Buffer.concat(w.take());
}

const sample = (): Buffer =>
  frames((w) => {
    w.settings([4, 65535, 5, 16384]);
    w.settingsAck();
    w.headers(1, Buffer.from("8286", "hex"), false, 16384);
    w.data(1, Buffer.from("hello"), true);
    w.ping(false, Buffer.from("0102030405060708", "hex"));
    w.windowUpdate(0, 1000);
    w.rstStream(3, 8);
    w.goaway(5, 0, "bye");
    w.data(7, Buffer.alloc(5000, 0x61), false); // large payload by reference
  });

describe("FrameParser", () => {
  it("parses many frames in one chunk, and the same split at every byte boundary", () => {
    const bytes = sample();
    const whole = recorder();
    new FrameParser(whole.sink).push(bytes);
    expect(whole.log.slice(0, 8)).toEqual([
      "SETTINGS ack=false 4,65535,5,16384",
      "SETTINGS ack=true ",
      "HEADERS 1 es=false eh=true 8286 dep=0",
      "DATA 1 es=true hello flow=5",
      "PING ack=false 0102030405060708",
      "WINDOW_UPDATE 0 1000",
      "RST 3 8",
      "GOAWAY 5 0 bye",
    ]);
    expect(whole.log[8]).toBe(`DATA 7 es=false ${"a".repeat(5000)} flow=5000`);
    for (let split = 1; split < bytes.length; split += 7) {
      const r = recorder();
      const p = new FrameParser(r.sink);
      p.push(bytes.subarray(0, split));
      p.push(bytes.subarray(split));
      expect(r.log).toEqual(whole.log);
    }
    // one byte at a time
    const r = recorder();
    const p = new FrameParser(r.sink);
    for (let i = 0; i < bytes.length; i++) p.push(bytes.subarray(i, i + 1));
    expect(r.log).toEqual(whole.log);
  });

  it("strips padding and priority from HEADERS and padding from DATA", () => {
    const r = recorder();
    const p = new FrameParser(r.sink);
    p.push(
      frames((w) => {
        // pad length 2, dependency 3 (exclusive bit set), weight, fragment 82, 2 pad octets
        w.raw(FRAME_HEADERS, FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS | FLAG_END_STREAM, 5, Buffer.from("02800000031082" + "0000", "hex"));
        w.raw(FRAME_DATA, FLAG_PADDED, 5, Buffer.from("03" + "6869" + "000000", "hex"));
        w.raw(FRAME_PRIORITY, 0, 9, Buffer.from("0000000110", "hex"));
      }),
    );
    expect(r.log).toEqual(["HEADERS 5 es=true eh=true 82 dep=3", "DATA 5 es=false hi flow=6", "PRIORITY 9 dep=1"]);
  });

  it("rejects a frame above the max frame size before its payload arrives", () => {
    const p = new FrameParser(recorder().sink, 16384);
    const header = Buffer.from([0x00, 0x40, 0x01, FRAME_DATA, 0, 0, 0, 0, 1]); // 16385 octets
    expect(() => p.push(header)).toThrow(H2ConnectionError);
    try {
      new FrameParser(recorder().sink).push(header);
    } catch (err) {
      expect((err as H2ConnectionError).code).toBe(H2_FRAME_SIZE_ERROR);
    }
  });

  const connError = (build: (w: FrameWriter) => void, code: number): void => {
    let caught: unknown;
    try {
      new FrameParser(recorder().sink).push(frames(build));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(H2ConnectionError);
    expect((caught as H2ConnectionError).code).toBe(code);
  };

  it("answers malformed frames with the RFC's connection errors", () => {
    connError((w) => w.raw(FRAME_DATA, 0, 0, Buffer.from("x")), H2_PROTOCOL_ERROR);
    connError((w) => w.raw(FRAME_HEADERS, FLAG_END_HEADERS, 0, Buffer.from("82", "hex")), H2_PROTOCOL_ERROR);
    connError((w) => w.raw(FRAME_SETTINGS, 0, 1, Buffer.alloc(0)), H2_PROTOCOL_ERROR);
    connError((w) => w.raw(FRAME_SETTINGS, 0, 0, Buffer.alloc(5)), H2_FRAME_SIZE_ERROR);
    connError((w) => w.raw(FRAME_SETTINGS, 1, 0, Buffer.alloc(6)), H2_FRAME_SIZE_ERROR);
    connError((w) => w.raw(FRAME_PING, 0, 0, Buffer.alloc(7)), H2_FRAME_SIZE_ERROR);
    connError((w) => w.raw(FRAME_PING, 0, 1, Buffer.alloc(8)), H2_PROTOCOL_ERROR);
    connError((w) => w.raw(FRAME_RST_STREAM, 0, 1, Buffer.alloc(3)), H2_FRAME_SIZE_ERROR);
    connError((w) => w.raw(FRAME_RST_STREAM, 0, 0, Buffer.alloc(4)), H2_PROTOCOL_ERROR);
    connError((w) => w.raw(FRAME_WINDOW_UPDATE, 0, 0, Buffer.alloc(4)), H2_PROTOCOL_ERROR);
    connError((w) => w.raw(FRAME_WINDOW_UPDATE, 0, 1, Buffer.alloc(5)), H2_FRAME_SIZE_ERROR);
    connError((w) => w.raw(FRAME_PUSH_PROMISE, 0, 1, Buffer.alloc(4)), H2_PROTOCOL_ERROR);
    // padding as long as the payload
    connError((w) => w.raw(FRAME_DATA, FLAG_PADDED, 1, Buffer.from("05616263", "hex")), H2_PROTOCOL_ERROR);
  });

  it("reports stream errors and goes on with the next frame", () => {
    const r = recorder();
    new FrameParser(r.sink).push(
      frames((w) => {
        w.raw(FRAME_WINDOW_UPDATE, 0, 3, Buffer.alloc(4)); // increment 0 on a stream
        w.raw(FRAME_PRIORITY, 0, 5, Buffer.alloc(4)); // wrong length
        w.raw(0xfa, 0, 7, Buffer.from("zz")); // unknown type
        w.ping(true, Buffer.alloc(8));
      }),
    );
    expect(r.log).toEqual(["STREAM_ERROR 3 1", "STREAM_ERROR 5 6", "UNKNOWN 250 7", "PING ack=true 0000000000000000"]);
    expect(new H2StreamError(1, 2, "x").streamId).toBe(1);
  });

  it("splits a large field block into HEADERS and CONTINUATION frames", () => {
    const block = Buffer.alloc(40000, 0x82);
    const r = recorder();
    new FrameParser(r.sink).push(frames((w) => w.headers(3, block, true, 16384)));
    expect(r.log.map((l) => l.split(" ").slice(0, 4).join(" "))).toEqual([
      "HEADERS 3 es=true eh=false",
      "CONTINUATION 3 eh=false " + "82".repeat(16384),
      "CONTINUATION 3 eh=true " + "82".repeat(40000 - 2 * 16384),
    ]);
  });
});
