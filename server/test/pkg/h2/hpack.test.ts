import { describe, expect, it } from "vitest";
import { HpackDecoder, HpackError, encodeHeaderBlock } from "../../../src/pkg/h2/hpack.js";
import { HuffmanError, huffmanDecode, huffmanEncode, huffmanEncodedLength } from "../../../src/pkg/h2/huffman.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const flat = (pairs: [string, string][]): string[] => pairs.flat();

// RFC 7541 Appendix C: each series runs on one decoder, so the dynamic table carries over.
interface Vector {
  hex: string;
  headers: [string, string][];
  tableSize: number;
  table?: [string, string][];
}

const C3: Vector[] = [
  {
    hex: "828684410f7777772e6578616d706c652e636f6d",
    headers: [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
    tableSize: 57,
    table: [[":authority", "www.example.com"]],
  },
  {
    hex: "828684be58086e6f2d6361636865",
    headers: [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], ["cache-control", "no-cache"]],
    tableSize: 110,
    table: [["cache-control", "no-cache"], [":authority", "www.example.com"]],
  },
  {
    hex: "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    headers: [[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], ["custom-key", "custom-value"]],
    tableSize: 164,
    table: [["custom-key", "custom-value"], ["cache-control", "no-cache"], [":authority", "www.example.com"]],
  },
];
const C4: Vector[] = [
  { ...C3[0]!, hex: "828684418cf1e3c2e5f23a6ba0ab90f4ff" },
  { ...C3[1]!, hex: "828684be5886a8eb10649cbf" },
  { ...C3[2]!, hex: "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf" },
];
const R1: [string, string][] = [[":status", "302"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], ["location", "https://www.example.com"]];
const R2: [string, string][] = [[":status", "307"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], ["location", "https://www.example.com"]];
const R3: [string, string][] = [
  [":status", "200"],
  ["cache-control", "private"],
  ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
  ["location", "https://www.example.com"],
  ["content-encoding", "gzip"],
  ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
];
const C5: Vector[] = [
  {
    hex: "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
    headers: R1,
    tableSize: 222,
    table: [["location", "https://www.example.com"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], ["cache-control", "private"], [":status", "302"]],
  },
  {
    hex: "4803333037c1c0bf",
    headers: R2,
    tableSize: 222,
    table: [[":status", "307"], ["location", "https://www.example.com"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], ["cache-control", "private"]],
  },
  {
    hex: "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31",
    headers: R3,
    tableSize: 215,
    table: [
      ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
      ["content-encoding", "gzip"],
      ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
    ],
  },
];
const C6: Vector[] = [
  { ...C5[0]!, hex: "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3" },
  { ...C5[1]!, hex: "4883640effc1c0bf" },
  {
    ...C5[2]!,
    hex: "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
  },
];

function runSeries(series: Vector[], tableSizeMax: number): void {
  const decoder = new HpackDecoder({ headerTableSizeMax: tableSizeMax });
  // C.5/C.6 run with a 256-octet table: the encoder told us with a size update we model by
  // starting the decoder's table at that size (the examples carry no update themselves)
  if (tableSizeMax !== 4096) decoder.decode(hex("3fe101")); // size update to 256
  for (const v of series) {
    const { fields, listSize } = decoder.decode(hex(v.hex));
    expect(fields).toEqual(flat(v.headers));
    expect(listSize).toBe(v.headers.reduce((n, [a, b]) => n + a.length + b.length + 32, 0));
    expect(decoder.tableSize).toBe(v.tableSize);
    if (v.table) expect(decoder.tableEntries()).toEqual(v.table);
  }
}

describe("HPACK decoder: RFC 7541 Appendix C", () => {
  it("C.2.1 literal with indexing", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572")).fields).toEqual(["custom-key", "custom-header"]);
    expect(d.tableSize).toBe(55);
  });
  it("C.2.2 literal without indexing", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("040c2f73616d706c652f70617468")).fields).toEqual([":path", "/sample/path"]);
    expect(d.tableSize).toBe(0);
  });
  it("C.2.3 literal never indexed", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("100870617373776f726406736563726574")).fields).toEqual(["password", "secret"]);
    expect(d.tableSize).toBe(0);
  });
  it("C.2.4 indexed field", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("82")).fields).toEqual([":method", "GET"]);
  });
  it("C.3 requests without Huffman", () => runSeries(C3, 4096));
  it("C.4 requests with Huffman", () => runSeries(C4, 4096));
  it("C.5 responses without Huffman, 256-octet table (evictions)", () => runSeries(C5, 256));
  it("C.6 responses with Huffman, 256-octet table (evictions)", () => runSeries(C6, 256));
});

describe("HPACK decoder errors", () => {
  const bad = (s: string, max = 4096): (() => void) => () => new HpackDecoder({ headerTableSizeMax: max }).decode(hex(s));
  it("index 0", () => expect(bad("80")).toThrow(HpackError));
  it("index past the dynamic table", () => expect(bad("be")).toThrow(HpackError));
  it("literal name index past the table", () => expect(bad("7f0100")).toThrow(HpackError));
  it("truncated integer", () => expect(bad("ff")).toThrow(HpackError));
  it("integer overflow", () => expect(bad("ffffffffffff7f")).toThrow(HpackError));
  it("string past the block", () => expect(bad("400a6375")).toThrow(HpackError));
  it("table size update above SETTINGS_HEADER_TABLE_SIZE", () => expect(bad("3fe21f", 4096)).toThrow(HpackError));
  it("table size update after a field", () => expect(bad("8220")).toThrow(HpackError));
  it("table size updates at the start are allowed, and shrink the table", () => {
    const d = new HpackDecoder();
    d.decode(hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"));
    expect(d.decode(hex("2020")).fields).toEqual([]);
    expect(d.tableSize).toBe(0);
    expect(() => d.decode(hex("be"))).toThrow(HpackError);
  });
  it("Huffman: EOS, long padding, padding not ones", () => {
    // EOS alone (30 ones) padded to 32 bits
    expect(bad("0084ffffffff")).toThrow(HpackError);
    // 'a' (00011, 5 bits) then 11 bits of ones: padding longer than 7 bits
    expect(bad("00821fff")).toThrow(HpackError);
    // 'a' then 3 zero bits: padding not all ones
    expect(bad("008118")).toThrow(HpackError);
    expect(() => huffmanDecode(hex("18"), 0, 1)).toThrow(HuffmanError);
  });
});

describe("Huffman", () => {
  it("encodes the RFC example and round-trips every octet", () => {
    const buf = Buffer.alloc(64);
    const end = huffmanEncode("www.example.com", buf, 0);
    expect(buf.subarray(0, end).toString("hex")).toBe("f1e3c2e5f23a6ba0ab90f4ff");
    for (let start = 0; start < 256; start += 16) {
      const s = Array.from({ length: 16 }, (_, i) => String.fromCharCode(start + i)).join("");
      const out = Buffer.alloc(huffmanEncodedLength(s));
      expect(huffmanEncode(s, out, 0)).toBe(out.length);
      expect(huffmanDecode(out, 0, out.length)).toBe(s);
    }
  });
});

describe("HPACK encoder", () => {
  it("indexes exact static matches, literals otherwise, and decodes back", () => {
    const fields = [":status", "200", "content-type", "application/grpc", "grpc-status", "0", "x-\u00ff", "\u00fe\u00fd"];
    const block = encodeHeaderBlock(fields);
    expect(block[0]).toBe(0x88);
    expect(new HpackDecoder().decode(block).fields).toEqual(fields);
    const raw = encodeHeaderBlock(fields, { huffman: false });
    expect(new HpackDecoder().decode(raw).fields).toEqual(fields);
    const d = new HpackDecoder();
    d.decode(block);
    expect(d.tableSize).toBe(0); // never adds to the peer's table
  });
  it("encodes long values with multi-octet integers", () => {
    const value = "x".repeat(1000);
    expect(new HpackDecoder().decode(encodeHeaderBlock(["grpc-message", value], { huffman: false })).fields).toEqual(["grpc-message", value]);
  });
});
