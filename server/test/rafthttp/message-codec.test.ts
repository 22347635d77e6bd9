/**
 * The raft message codec against etcd 3.4's own marshaller and unmarshaller (golden cases written
 * by etcd's code: golden/gen-golden.sh), and the generated raftpb code against the same bytes.
 */
import { describe, expect, it } from "vitest";
import { Message as PbMessage } from "@etcd-ts/proto/raftpb/raft";
import { RaftWireDecodeError, decodeMessage, encodeMessage, messageSize } from "../../src/rafthttp/message-codec.js";
import { MessageType, emptyMessage } from "../../src/raft/types.js";
import { fitsModel, fromJson, golden, hex, normalize, toHex } from "./golden.js";

describe("message codec: etcd's marshaller, byte for byte", () => {
  it("has golden cases", () => {
    expect(golden.encode.length).toBeGreaterThan(100);
  });

  for (const c of golden.encode) {
    it(`encodes ${c.name}`, () => {
      const m = fromJson(c.message);
      expect(messageSize(m)).toBe(c.hex.length / 2);
      expect(toHex(encodeMessage(m))).toBe(c.hex);
      expect(normalize(decodeMessage(hex(c.hex)))).toEqual(normalize(m));
    });
  }

  it("the generated raftpb code writes etcd's zero fields and empty snapshot", () => {
    const hb = PbMessage.fromPartial({ type: 8, to: 2n, from: 1n, term: 3n, commit: 5n });
    expect(toHex(PbMessage.encode(hb).finish())).toBe("08081002180120032800300040054a0a12080a0228001000180050005800");
  });

  it("the generated raftpb code writes the same bytes", () => {
    for (const c of golden.encode) {
      const decoded = PbMessage.decode(hex(c.hex));
      expect(toHex(PbMessage.encode(decoded).finish()), c.name).toBe(c.hex);
    }
  });
});

describe("message codec: what etcd's unmarshaller accepts and refuses", () => {
  for (const c of golden.decode) {
    it(`${c.name}: ${c.message === null ? `refused (${c.error})` : "accepted"}`, () => {
      const bytes = hex(c.hex);
      if (c.message !== null && fitsModel(c.message)) {
        expect(normalize(decodeMessage(bytes))).toEqual(normalize(fromJson(c.message)));
        return;
      }
      let thrown: unknown;
      try {
        decodeMessage(bytes);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(RaftWireDecodeError);
      if (c.message === null && c.error !== "panic") expect((thrown as Error).message).toBe(c.error);
    });
  }
});

describe("message codec: edges", () => {
  it("writes the empty snapshot etcd writes for every message but MsgSnap", () => {
    const m = emptyMessage(MessageType.Heartbeat, 2n, 1n);
    m.term = 3;
    m.commit = 5;
    expect(toHex(encodeMessage(m))).toBe("08081002180120032800300040054a0a12080a0228001000180050005800");
  });

  it("refuses values it cannot encode", () => {
    const m = emptyMessage(MessageType.App, 2n, 1n);
    expect(() => encodeMessage({ ...m, term: -1 })).toThrow(RangeError);
    expect(() => encodeMessage({ ...m, index: 2 ** 53 })).toThrow(RangeError);
    expect(() => encodeMessage({ ...m, to: 1n << 64n })).toThrow(RangeError);
  });

  it("a decoded snapshot stays the message's own while later messages decode (the empty one is a reused scratch)", () => {
    const snap = emptyMessage(MessageType.Snap, 0x8e9e05c52164694dn, 0xfd422379fda50e48n);
    snap.snapshot = { metadata: { index: 40, term: 3, confState: { voters: [0x8e9e05c52164694dn, 1n], learners: [0xfd422379fda50e48n] } }, data: new Uint8Array([1, 2, 3]) };
    const first = decodeMessage(encodeMessage(snap));
    const heartbeat = emptyMessage(MessageType.Heartbeat, 0xfd422379fda50e48n, 0x8e9e05c52164694dn);
    for (let i = 0; i < 3; i++) expect(decodeMessage(encodeMessage(heartbeat)).snapshot).toBeUndefined();
    // a garbled snapshot left half-read in the scratch must not leak into the next message
    const garbled = encodeMessage(snap).slice(0, -3);
    expect(() => decodeMessage(garbled)).toThrow(RaftWireDecodeError);
    expect(decodeMessage(encodeMessage(heartbeat)).snapshot).toBeUndefined();
    const second = decodeMessage(encodeMessage(snap));
    for (const m of [first, second]) {
      expect(m.snapshot?.metadata).toEqual(snap.snapshot.metadata);
      expect([...m.snapshot!.data]).toEqual([1, 2, 3]);
    }
    expect(second.snapshot).not.toBe(first.snapshot);
    expect([first.to, first.from, second.to, second.from]).toEqual([snap.to, snap.from, snap.to, snap.from]);
  });

  it("refuses terms and indexes above 2^53 - 1 (etcd would take them; our model cannot hold them)", () => {
    // term = 2^53
    expect(() => decodeMessage(hex("2080808080808080100a"))).toThrow(RaftWireDecodeError);
  });

  it("survives random garbage with RaftWireDecodeError only", () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    let x = seed;
    const rnd = (): number => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x / 2147483648;
    };
    try {
      for (let i = 0; i < 5000; i++) {
        const b = new Uint8Array(Math.floor(rnd() * 64));
        for (let k = 0; k < b.length; k++) b[k] = Math.floor(rnd() * 256);
        try {
          decodeMessage(b);
        } catch (err) {
          if (!(err instanceof RaftWireDecodeError)) throw err;
        }
      }
    } catch (err) {
      console.error(`seed=${seed}`);
      throw err;
    }
  });
});
