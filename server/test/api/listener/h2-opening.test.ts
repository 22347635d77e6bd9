/**
 * H2Opening: how the client listener reads the opening of an HTTP/2 connection (which path, and
 * which bytes the session gets), from byte sequences shaped like those real clients send.
 */
import { describe, expect, it } from "vitest";
import { H2_PREFACE, H2Opening, serverSettingsFrame } from "../../../src/api/listener/h2-opening.js";

function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}
const settings = frame(4, 0, 0);
const settingsAck = frame(4, 1, 0);
const windowUpdate = frame(8, 0, 0, Buffer.from([0, 0x0e, 0xff, 0x01]));
/** :method POST, :scheme http, :authority <value> (plain literal, incremental indexing, name index 1). */
function requestBlock(authority: string): Buffer {
  const value = Buffer.from(authority, "latin1");
  return Buffer.concat([Buffer.from([0x83, 0x86, 0x41, value.length]), value]);
}
const headers = (authority: string, flags = 0x4): Buffer => frame(1, flags, 1, requestBlock(authority));

describe("H2Opening", () => {
  it("Go client: SETTINGS, then (after ours) ACK + HEADERS with a host authority → native, ACK removed", () => {
    const o = new H2Opening();
    o.push(Buffer.concat([H2_PREFACE, settings, windowUpdate]));
    expect(o.decision).toBeUndefined();
    expect(o.settingsAckSeen).toBe(false);
    o.push(Buffer.concat([settingsAck, headers("127.0.0.1:2379"), frame(0, 1, 1, Buffer.from([0, 0, 0, 0, 0]))]));
    expect(o.decision).toEqual({ path: "native", reason: "request", authority: "127.0.0.1:2379" });
    expect(o.settingsAckSeen).toBe(true);
    expect(o.takeBytes().equals(Buffer.concat([H2_PREFACE, settings, windowUpdate, headers("127.0.0.1:2379"), frame(0, 1, 1, Buffer.from([0, 0, 0, 0, 0]))]))).toBe(true);
  });

  it("URL-shaped authority → rewrite", () => {
    const o = new H2Opening();
    o.push(Buffer.concat([H2_PREFACE, settings, settingsAck, headers("http://127.0.0.1:2379")]));
    expect(o.decision).toEqual({ path: "rewrite", reason: "url-authority", authority: "http://127.0.0.1:2379" });
  });

  it("eager client (HEADERS before the ACK): decided at once, ACK found later, byte by byte", () => {
    const all = Buffer.concat([H2_PREFACE, settings, headers("localhost"), frame(0, 1, 1, Buffer.from("x")), settingsAck, frame(6, 0, 0, Buffer.alloc(8))]);
    const o = new H2Opening();
    for (let i = 0; i < all.length; i++) o.push(all.subarray(i, i + 1));
    expect(o.decision?.path).toBe("native");
    expect(o.settingsAckSeen).toBe(true);
    const kept = o.takeBytes();
    expect(kept.length).toBe(all.length - 9);
    expect(kept.includes(settingsAck)).toBe(false);
  });

  it("only the first ACK is removed", () => {
    const o = new H2Opening();
    o.push(Buffer.concat([H2_PREFACE, settings, settingsAck, settingsAck]));
    expect(o.takeBytes().equals(Buffer.concat([H2_PREFACE, settings, settingsAck]))).toBe(true);
  });

  it("collects CONTINUATION frames before deciding", () => {
    const block = requestBlock("http://h:1");
    const o = new H2Opening();
    o.push(Buffer.concat([H2_PREFACE, settings, settingsAck, frame(1, 0, 1, block.subarray(0, 3))]));
    expect(o.decision).toBeUndefined();
    o.push(frame(9, 0x4, 1, block.subarray(3)));
    expect(o.decision?.path).toBe("rewrite");
  });

  it("skips padding and priority fields of HEADERS", () => {
    const block = requestBlock("http://h:1");
    const payload = Buffer.concat([Buffer.from([2]), Buffer.from([0, 0, 0, 0, 16]), block, Buffer.alloc(2)]);
    const o = new H2Opening();
    o.push(Buffer.concat([H2_PREFACE, settings, settingsAck, frame(1, 0x4 | 0x8 | 0x20, 1, payload)]));
    expect(o.decision).toMatchObject({ path: "rewrite", authority: "http://h:1" });
  });

  it("frames that need the session before any request → native; SETTINGS/WINDOW_UPDATE/PRIORITY wait", () => {
    const o = new H2Opening();
    o.push(Buffer.concat([H2_PREFACE, settings, settingsAck, windowUpdate, frame(2, 0, 3, Buffer.alloc(5)), frame(0xb, 0, 0, Buffer.alloc(3))]));
    expect(o.decision).toBeUndefined();
    o.push(frame(6, 0, 0, Buffer.alloc(8)));
    expect(o.decision).toEqual({ path: "native", reason: "frame-6" });
  });

  it("an undecodable header block → rewrite; no authority → native", () => {
    const bad = new H2Opening();
    bad.push(Buffer.concat([H2_PREFACE, settings, frame(1, 0x4, 1, Buffer.from([0x80]))]));
    expect(bad.decision).toEqual({ path: "rewrite", reason: "bad-headers" });
    const none = new H2Opening();
    none.push(Buffer.concat([H2_PREFACE, settings, frame(1, 0x4, 1, Buffer.from([0x83, 0x86]))]));
    expect(none.decision).toEqual({ path: "native", reason: "request" });
  });

  it("a frame longer than the client may send stops the scan", () => {
    const o = new H2Opening();
    const big = Buffer.alloc(9);
    big.writeUIntBE(16_385, 0, 3);
    o.push(Buffer.concat([H2_PREFACE, settings, big]));
    expect(o.unframeable).toBe(true);
  });

  it("decide() records outside decisions once", () => {
    const o = new H2Opening();
    o.push(Buffer.concat([H2_PREFACE, settings]));
    o.decide("native", "idle");
    o.decide("rewrite", "other");
    o.push(Buffer.concat([settingsAck, headers("http://x")]));
    expect(o.decision).toEqual({ path: "native", reason: "idle" });
  });

  it("packs the server SETTINGS as Node does", () => {
    expect(serverSettingsFrame().toString("hex")).toBe("000000040000000000");
    expect(serverSettingsFrame({ maxConcurrentStreams: 2 ** 31 - 1 }).toString("hex")).toBe("000006040000000000" + "00037fffffff");
  });
});

describe("H2Opening.endsIncomplete", () => {
  it("is true inside a frame and inside a header block, false between frames", () => {
    const o = new H2Opening();
    o.push(Buffer.concat([H2_PREFACE, settings, settingsAck]));
    expect(o.endsIncomplete).toBe(false);
    const h = headers("http://h:1", 0);
    o.push(h.subarray(0, 5));
    expect(o.endsIncomplete).toBe(true);
    o.push(h.subarray(5));
    expect(o.decision).toBeUndefined();
    expect(o.endsIncomplete).toBe(true); // CONTINUATION still to come
    o.push(frame(9, 0x4, 1, Buffer.alloc(0)));
    expect(o.endsIncomplete).toBe(false);
    expect(o.decision?.path).toBe("rewrite");
  });
});
