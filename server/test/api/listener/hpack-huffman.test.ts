/**
 * HPACK's Huffman decoder and the first-request `:authority` reader, against RFC 7541's
 * examples (Appendix C.4 requests, C.6 responses) and round trips through an encoder built from
 * the same code table. Randomised cases take SEED= and RUNS= and print seed=N on failure.
 */
import { describe, expect, it } from "vitest";
import { decodeHuffman, huffmanCodeTable, HpackHuffmanError } from "../../../src/api/listener/hpack-huffman.js";
import { firstBlockAuthority, HpackBlockError, isUrlAuthority } from "../../../src/api/listener/h2-authority.js";
import { seededUniform as rng } from "../../../../test/harness/seeded-random.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** Huffman-encodes bytes (for round trips), padding with the top bits of EOS. */
function encodeHuffman(bytes: Uint8Array): Buffer {
  const table = huffmanCodeTable();
  const out: number[] = [];
  let acc = 0;
  let accBits = 0;
  for (const b of bytes) {
    const [code, bits] = table[b]!;
    for (let i = bits - 1; i >= 0; i--) {
      acc = (acc << 1) | (Math.floor(code / 2 ** i) & 1);
      if (++accBits === 8) {
        out.push(acc);
        acc = 0;
        accBits = 0;
      }
    }
  }
  if (accBits > 0) out.push((acc << (8 - accBits)) | ((1 << (8 - accBits)) - 1));
  return Buffer.from(out);
}


describe("decodeHuffman (RFC 7541 §5.2, Appendix B)", () => {
  it("decodes the Huffman-coded strings of Appendix C.4 (requests)", () => {
    expect(decodeHuffman(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"))).toBe("www.example.com"); // C.4.1
    expect(decodeHuffman(hex("a8eb 1064 9cbf"))).toBe("no-cache"); // C.4.2
    expect(decodeHuffman(hex("25a8 49e9 5ba9 7d7f"))).toBe("custom-key"); // C.4.3
    expect(decodeHuffman(hex("25a8 49e9 5bb8 e8b4 bf"))).toBe("custom-value"); // C.4.3
  });

  it("decodes the Huffman-coded strings of Appendix C.6 (responses)", () => {
    expect(decodeHuffman(hex("6402"))).toBe("302");
    expect(decodeHuffman(hex("aec3 771a 4b"))).toBe("private");
    expect(decodeHuffman(hex("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"))).toBe("Mon, 21 Oct 2013 20:13:21 GMT");
    expect(decodeHuffman(hex("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"))).toBe("https://www.example.com");
    expect(decodeHuffman(hex("640e ff"))).toBe("307");
    expect(decodeHuffman(hex("9bd9 ab"))).toBe("gzip");
    expect(
      decodeHuffman(hex("94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07")),
    ).toBe("foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1");
  });

  it("decodes what etcdctl 3.4 sends as :authority", () => {
    // Captured from `etcdctl --endpoints=http://127.0.0.1:23792 endpoint status` and `put`.
    expect(decodeHuffman(hex("9d29aee30c044eae05c0b86e09975f17"))).toBe("http://127.0.0.1:23792");
    expect(decodeHuffman(hex("089d5c0b8170dc132ebe2f"))).toBe("127.0.0.1:23792");
  });

  it("derives Appendix B's codes from the code lengths", () => {
    const table = huffmanCodeTable();
    expect(table.length).toBe(257);
    expect(table[0]).toEqual([0x1ff8, 13]);
    expect(table[1]).toEqual([0x7fffd8, 23]);
    expect(table[10]).toEqual([0x3ffffffc, 30]);
    expect(table[48]).toEqual([0x0, 5]); // '0'
    expect(table[32]).toEqual([0x14, 6]); // ' '
    expect(table[255]).toEqual([0x3ffffee, 26]);
    expect(table[256]).toEqual([0x3fffffff, 30]); // EOS
  });

  it("round-trips every byte value, and random strings", () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(Buffer.from(decodeHuffman(encodeHuffman(all)), "latin1").equals(all)).toBe(true);
    expect(decodeHuffman(Buffer.alloc(0))).toBe("");
    const seed = Number(process.env["SEED"] ?? Date.now() % 1_000_000);
    const runs = Number(process.env["RUNS"] ?? 200);
    const next = rng(seed);
    try {
      for (let run = 0; run < runs; run++) {
        const length = Math.floor(next() * 64);
        const bytes = Buffer.from(Array.from({ length }, () => Math.floor(next() * (next() < 0.8 ? 128 : 256))));
        expect(Buffer.from(decodeHuffman(encodeHuffman(bytes)), "latin1").equals(bytes)).toBe(true);
      }
    } catch (err) {
      console.error(`seed=${seed}`);
      throw err;
    }
  });

  it("rejects padding longer than 7 bits, padding that is not all ones, and EOS", () => {
    // "0" is 00000 (5 bits); a full byte of ones after it is 11 bits of padding.
    expect(() => decodeHuffman(hex("07ff"))).toThrow(HpackHuffmanError);
    // "0" then 000: padding of zeros.
    expect(() => decodeHuffman(hex("00"))).toThrow(HpackHuffmanError);
    // EOS (30 ones) followed by padding.
    expect(() => decodeHuffman(hex("ffffffff"))).toThrow(HpackHuffmanError);
    // "0" + 111 is valid: three bits of padding.
    expect(decodeHuffman(hex("07"))).toBe("0");
  });
});

describe("firstBlockAuthority", () => {
  it("reads C.3.1 (plain literal) and C.4.1 (Huffman literal)", () => {
    expect(firstBlockAuthority(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"))).toBe("www.example.com");
    expect(firstBlockAuthority(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))).toBe("www.example.com");
  });

  it("reads the first request of etcdctl 3.4's per-endpoint dial", () => {
    // :method POST, :scheme http, :path (Huffman), :authority http://127.0.0.1:23792 (Huffman), ...
    const block = hex(
      "8386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae05c0b86e09975f175f8b1d75d0620d263d4c4d6564",
    );
    const authority = firstBlockAuthority(block);
    expect(authority).toBe("http://127.0.0.1:23792");
    expect(isUrlAuthority(authority!)).toBe(true);
  });

  it("reads :authority given as a literal name, without indexing, and never indexed", () => {
    const name = Buffer.from(":authority");
    const value = Buffer.from("h:1");
    const literalName = (first: number): Buffer => Buffer.concat([Buffer.from([first, name.length]), name, Buffer.from([value.length]), value]);
    expect(firstBlockAuthority(literalName(0x40))).toBe("h:1"); // with incremental indexing
    expect(firstBlockAuthority(literalName(0x00))).toBe("h:1"); // without indexing
    expect(firstBlockAuthority(literalName(0x10))).toBe("h:1"); // never indexed
    expect(firstBlockAuthority(Buffer.concat([Buffer.from([0x11, value.length]), value]))).toBe("h:1"); // never indexed, name index 1
  });

  it("follows an index into entries the block itself added", () => {
    // custom-key: v (incremental indexing, entry 62), then :authority indexed... via static 1 ("").
    const block = Buffer.concat([hex("40"), Buffer.from([10]), Buffer.from("custom-key"), Buffer.from([1]), Buffer.from("v"), hex("be 81")]);
    expect(firstBlockAuthority(block)).toBe(""); // 0xbe = entry 62 (custom-key), 0x81 = static :authority
  });

  it("returns undefined without :authority, and throws on broken blocks", () => {
    expect(firstBlockAuthority(hex("8286 84"))).toBeUndefined();
    expect(() => firstBlockAuthority(hex("80"))).toThrow(HpackBlockError); // index 0
    expect(() => firstBlockAuthority(hex("bf"))).toThrow(HpackBlockError); // entry 63 never added
    expect(() => firstBlockAuthority(hex("4105 6162"))).toThrow(HpackBlockError); // value cut short
    expect(() => firstBlockAuthority(hex("4181 00"))).toThrow(HpackHuffmanError);
  });

  it("tells URL-shaped authorities from hosts", () => {
    expect(isUrlAuthority("http://127.0.0.1:2379")).toBe(true);
    expect(isUrlAuthority("127.0.0.1:2379/")).toBe(true);
    expect(isUrlAuthority("127.0.0.1:2379")).toBe(false);
    expect(isUrlAuthority("[::1]:2379")).toBe(false);
    expect(isUrlAuthority("localhost")).toBe(false);
  });
});
