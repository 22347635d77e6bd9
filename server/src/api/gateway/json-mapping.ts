/**
 * JSON <-> ts-proto message mapping for the HTTP gateway, as etcd 3.4's grpc-gateway does it
 * (golang/protobuf jsonpb with OrigName, over Go's encoding/json):
 *
 * Output: fields in .proto declaration order under their .proto names; default values omitted
 * (zero numbers, false, "", empty bytes, empty lists) except oneof members, which are written
 * whenever set; 64-bit integers as decimal strings; enums by name; bytes as standard base64.
 *
 * Input: one JSON value read from the body (trailing bytes ignored, an empty body is an empty
 * request); fields matched by .proto name or JSON camel name, unknown fields ignored, null means
 * unset; 64-bit integers as numbers or strings; enums by name or number; bytes as standard base64.
 * Errors carry Go's message text (clients and tests compare it), as a GatewayInputError.
 */

/** Field types the gateway distinguishes. */
export type ScalarKind = "int64" | "uint64" | "int32" | "uint32" | "bool" | "string" | "bytes";

export interface ProtoField {
  /** Name as written in the .proto (grpc-gateway's OrigName output). */
  protoName: string;
  /** protoc's json_name (lowerCamel of protoName), accepted on input. */
  jsonName: string;
  /** Property name in the ts-proto interface. */
  tsName: string;
  number: number;
  repeated: boolean;
  /** Set when the field belongs to a oneof (then it is emitted whenever present). */
  oneof?: string;
  kind: ScalarKind | "enum" | "message";
  /** Fully qualified type name for enum and message fields (e.g. "mvccpb.KeyValue"). */
  typeName?: string;
}

export interface ProtoMessage {
  fields: ProtoField[];
}

export interface ProtoEnum {
  /** Value names by number, and numbers by name. */
  values: Array<[name: string, number: number]>;
}

/** The message table the mapping works from (schema.ts, generated from the .proto files). */
export interface ProtoSchema {
  messages: Record<string, ProtoMessage>;
  enums: Record<string, ProtoEnum>;
}

/** A request body that is not valid JSON or does not fit the message; `message` is Go's text. */
export class GatewayInputError extends Error {
  override readonly name = "GatewayInputError";
}

/** A parsed JSON value; numbers keep their source text so 64-bit integers stay exact. */
export type JsonValue =
  | { t: "object"; entries: Array<[string, JsonValue]> }
  | { t: "array"; items: JsonValue[] }
  | { t: "string"; v: string }
  | { t: "number"; raw: string }
  | { t: "bool"; v: boolean }
  | { t: "null" };

/** Nesting depth a request may use (Go's decoder allows 10000; ours is tighter). */
const DEPTH_MAX = 1000;

/** Go's quoting of a byte in scanner errors ('x', '\n', '"', '\''). */
function quoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '"') return "'\"'";
  const q = JSON.stringify(c);
  return `'${q.slice(1, -1)}'`;
}

/**
 * Reads JSON values one after another from `text`, as Go's json.Decoder does: each `next()`
 * returns the next value, or undefined at the end of input (only whitespace left).
 * Throws GatewayInputError with Go's message on a syntax error.
 */
export class JsonReader {
  private i = 0;
  constructor(private readonly s: string) {}

  /** Byte offset of the next unread character. */
  get offset(): number {
    return this.i;
  }

  next(): JsonValue | undefined {
    this.ws();
    if (this.i >= this.s.length) return undefined;
    return this.value(0, "looking for beginning of value");
  }

  private fail(msg: string): never {
    throw new GatewayInputError(msg);
  }
  private eof(): never {
    this.fail("unexpected EOF");
  }
  private ws(): void {
    while (this.i < this.s.length) {
      const c = this.s[this.i];
      if (c !== " " && c !== "\t" && c !== "\n" && c !== "\r") break;
      this.i++;
    }
  }
  private peek(context: string): string {
    this.ws();
    if (this.i >= this.s.length) this.eof();
    void context;
    return this.s[this.i];
  }

  private value(depth: number, context: string): JsonValue {
    if (depth > DEPTH_MAX) this.fail("exceeded max depth");
    const c = this.peek(context);
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return { t: "string", v: this.string() };
    if (c === "-" || (c >= "0" && c <= "9")) return { t: "number", raw: this.number() };
    if (c === "t") { this.literal("true"); return { t: "bool", v: true }; }
    if (c === "f") { this.literal("false"); return { t: "bool", v: false }; }
    if (c === "n") { this.literal("null"); return { t: "null" }; }
    this.fail(`invalid character ${quoteChar(c)} ${context}`);
  }

  private literal(word: string): void {
    for (let k = 0; k < word.length; k++, this.i++) {
      if (this.i >= this.s.length) this.eof();
      const c = this.s[this.i];
      if (c !== word[k]) this.fail(`invalid character ${quoteChar(c)} in literal ${word} (expecting ${quoteChar(word[k])})`);
    }
  }

  private object(depth: number): JsonValue {
    this.i++; // {
    const entries: Array<[string, JsonValue]> = [];
    let c = this.peek("");
    if (c === "}") { this.i++; return { t: "object", entries }; }
    for (;;) {
      c = this.peek("");
      if (c !== '"') this.fail(`invalid character ${quoteChar(c)} looking for beginning of object key string`);
      const key = this.string();
      c = this.peek("");
      if (c !== ":") this.fail(`invalid character ${quoteChar(c)} after object key`);
      this.i++;
      entries.push([key, this.value(depth + 1, "looking for beginning of value")]);
      c = this.peek("");
      this.i++;
      if (c === "}") return { t: "object", entries };
      if (c !== ",") this.fail(`invalid character ${quoteChar(c)} after object key:value pair`);
    }
  }

  private array(depth: number): JsonValue {
    this.i++; // [
    const items: JsonValue[] = [];
    let c = this.peek("");
    if (c === "]") { this.i++; return { t: "array", items }; }
    for (;;) {
      items.push(this.value(depth + 1, "looking for beginning of value"));
      c = this.peek("");
      this.i++;
      if (c === "]") return { t: "array", items };
      if (c !== ",") this.fail(`invalid character ${quoteChar(c)} after array element`);
    }
  }

  private string(): string {
    const start = this.i;
    this.i++; // opening quote
    for (;;) {
      if (this.i >= this.s.length) this.eof();
      const c = this.s[this.i];
      if (c === '"') { this.i++; break; }
      if (c === "\\") {
        this.i++;
        if (this.i >= this.s.length) this.eof();
        const e = this.s[this.i];
        if (e === "u") {
          for (let k = 1; k <= 4; k++) {
            if (this.i + k >= this.s.length) this.eof();
            const h = this.s[this.i + k];
            if (!/[0-9a-fA-F]/.test(h)) { this.i += k; this.fail(`invalid character ${quoteChar(h)} in \\u hexadecimal character escape`); }
          }
          this.i += 5;
          continue;
        }
        if (!'"\\/bfnrt'.includes(e)) this.fail(`invalid character ${quoteChar(e)} in string escape code`);
        this.i++;
        continue;
      }
      if (c < " ") this.fail(`invalid character ${quoteChar(c)} in string literal`);
      this.i++;
    }
    return JSON.parse(this.s.slice(start, this.i)) as string;
  }

  private number(): string {
    const start = this.i;
    const digit = (): boolean => this.i < this.s.length && this.s[this.i] >= "0" && this.s[this.i] <= "9";
    const at = (): string => { if (this.i >= this.s.length) this.eof(); return this.s[this.i]; };
    if (this.s[this.i] === "-") {
      this.i++;
      if (!digit()) this.fail(`invalid character ${quoteChar(at())} in numeric literal`);
    }
    if (this.s[this.i] === "0") this.i++;
    else while (digit()) this.i++;
    if (this.s[this.i] === ".") {
      this.i++;
      if (!digit()) this.fail(`invalid character ${quoteChar(at())} after decimal point in numeric literal`);
      while (digit()) this.i++;
    }
    if (this.s[this.i] === "e" || this.s[this.i] === "E") {
      this.i++;
      if (this.s[this.i] === "+" || this.s[this.i] === "-") this.i++;
      if (!digit()) this.fail(`invalid character ${quoteChar(at())} in exponent of numeric literal`);
      while (digit()) this.i++;
    }
    return this.s.slice(start, this.i);
  }
}

/** Go's name for a JSON value's kind in "cannot unmarshal" errors. */
function kindOf(v: JsonValue): string {
  return v.t;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INDEX = new Map([...B64].map((c, k) => [c, k]));

/**
 * Go's base64.StdEncoding.DecodeString: padding required, \r and \n skipped; errors name the
 * offending input byte ("illegal base64 data at input byte N").
 */
export function decodeBase64Std(s: string): Buffer {
  const out: number[] = [];
  const bad = (n: number): never => {
    throw new GatewayInputError(`illegal base64 data at input byte ${n}`);
  };
  let si = 0;
  while (si < s.length) {
    const quantum: number[] = [];
    let j = 0;
    let done = false;
    for (; j < 4; ) {
      if (si === s.length) {
        if (j === 0) { done = true; break; }
        bad(si - j);
      }
      const c = s[si];
      si++;
      if (c === "\n" || c === "\r") continue;
      const v = B64_INDEX.get(c);
      if (v !== undefined) { quantum.push(v); j++; continue; }
      if (c !== "=") bad(si - 1);
      // Padding: only in the last two places of a quantum, and nothing after it.
      if (j === 0 || j === 1) bad(si - 1);
      if (j === 2) {
        while (si < s.length && (s[si] === "\n" || s[si] === "\r")) si++;
        if (si === s.length) bad(s.length);
        if (s[si] !== "=") bad(si - 1);
        si++;
      }
      while (si < s.length && (s[si] === "\n" || s[si] === "\r")) si++;
      if (si < s.length) bad(si);
      done = true;
      break;
    }
    const [a, b, c, d] = quantum;
    if (quantum.length >= 2) out.push(((a << 2) | (b >> 4)) & 0xff);
    if (quantum.length >= 3) out.push(((b << 4) | (c >> 2)) & 0xff);
    if (quantum.length >= 4) out.push(((c << 6) | d) & 0xff);
    if (done) break;
  }
  return Buffer.from(out);
}

const INT_RANGE: Record<string, [bigint, bigint]> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
};

function parseInteger(v: JsonValue, kind: "int64" | "uint64" | "int32" | "uint32"): bigint {
  let raw: string;
  if (v.t === "number") {
    raw = v.raw;
  } else if (v.t === "string") {
    // jsonpb takes a quoted integer by parsing the text inside the quotes as JSON.
    const inner = new JsonReader(v.v);
    const parsed = inner.next();
    if (parsed === undefined) throw new GatewayInputError("unexpected end of JSON input");
    if (parsed.t !== "number") throw new GatewayInputError(`json: cannot unmarshal ${kindOf(parsed)} into Go value of type ${kind}`);
    raw = parsed.raw;
  } else {
    throw new GatewayInputError(`json: cannot unmarshal ${kindOf(v)} into Go value of type ${kind}`);
  }
  if (!/^-?\d+$/.test(raw)) throw new GatewayInputError(`json: cannot unmarshal number ${raw} into Go value of type ${kind}`);
  const n = BigInt(raw);
  const [lo, hi] = INT_RANGE[kind];
  if (n < lo || n > hi) throw new GatewayInputError(`json: cannot unmarshal number ${raw} into Go value of type ${kind}`);
  return n;
}

/** The ts-proto default of a non-oneof field. */
function defaultOf(f: ProtoField): unknown {
  if (f.repeated) return [];
  switch (f.kind) {
    case "int64": case "uint64": return 0n;
    case "int32": case "uint32": case "enum": return 0;
    case "bool": return false;
    case "string": return "";
    case "bytes": return Buffer.alloc(0);
    case "message": return undefined;
  }
}

/** Maps JSON to and from ts-proto objects for the messages of one schema. */
export class GatewayCodec {
  private readonly byInputName = new Map<string, Map<string, ProtoField>>();

  constructor(private readonly schema: ProtoSchema) {
    for (const [name, m] of Object.entries(schema.messages)) {
      const names = new Map<string, ProtoField>();
      for (const f of m.fields) {
        names.set(f.jsonName, f);
        names.set(f.protoName, f);
      }
      this.byInputName.set(name, names);
    }
  }

  /** A ts-proto object of message `type` with every field at its default. */
  empty(type: string): Record<string, unknown> {
    const m = this.message(type);
    const obj: Record<string, unknown> = {};
    for (const f of m.fields) if (f.oneof === undefined && !(f.kind === "message" && !f.repeated)) obj[f.tsName] = defaultOf(f);
    return obj;
  }

  /**
   * Decodes one request from a JSON value into a ts-proto object of message `type`.
   * Throws GatewayInputError with jsonpb's message when the value does not fit.
   */
  decode(type: string, v: JsonValue): Record<string, unknown> {
    if (v.t !== "object") {
      throw new GatewayInputError(`json: cannot unmarshal ${kindOf(v)} into Go value of type map[string]json.RawMessage`);
    }
    const obj = this.empty(type);
    const names = this.byInputName.get(type)!;
    for (const [key, fv] of v.entries) {
      const f = names.get(key);
      if (f === undefined || fv.t === "null") continue;
      if (f.repeated) {
        if (fv.t !== "array") throw new GatewayInputError(`json: cannot unmarshal ${kindOf(fv)} into Go value of type []json.RawMessage`);
        obj[f.tsName] = fv.items.map((item) => this.decodeSingle(f, item));
      } else {
        obj[f.tsName] = this.decodeSingle(f, fv);
      }
    }
    return obj;
  }

  private decodeSingle(f: ProtoField, v: JsonValue): unknown {
    switch (f.kind) {
      case "int64": case "uint64": return parseInteger(v, f.kind);
      case "int32": case "uint32": return Number(parseInteger(v, f.kind));
      case "bool":
        if (v.t !== "bool") throw new GatewayInputError(`json: cannot unmarshal ${kindOf(v)} into Go value of type bool`);
        return v.v;
      case "string":
        if (v.t !== "string") throw new GatewayInputError(`json: cannot unmarshal ${kindOf(v)} into Go value of type string`);
        return v.v;
      case "bytes":
        if (v.t !== "string") throw new GatewayInputError(`json: cannot unmarshal ${kindOf(v)} into Go value of type []uint8`);
        return decodeBase64Std(v.v);
      case "enum": {
        const e = this.schema.enums[f.typeName!];
        if (v.t === "string") {
          const hit = e.values.find(([n]) => n === v.v);
          if (hit === undefined) throw new GatewayInputError(`unknown value ${JSON.stringify(v.v)} for enum ${goEnumName(f.typeName!)}`);
          return hit[1];
        }
        return Number(parseInteger(v, "int32"));
      }
      case "message":
        if (v.t === "null") return undefined;
        return this.decode(f.typeName!, v);
    }
  }

  /** The JSON text grpc-gateway writes for ts-proto object `obj` of message `type`. */
  encode(type: string, obj: unknown): string {
    return JSON.stringify(this.toJson(type, obj));
  }

  /** Plain JSON value (ordered object) for `obj`; see encode(). */
  toJson(type: string, obj: unknown): Record<string, unknown> {
    const m = this.message(type);
    const src = (obj ?? {}) as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const f of m.fields) {
      const v = src[f.tsName];
      if (v === undefined || v === null) continue;
      if (f.repeated) {
        const list = v as unknown[];
        if (list.length === 0) continue;
        out[f.protoName] = list.map((item) => this.encodeSingle(f, item));
        continue;
      }
      if (f.oneof === undefined && f.kind !== "message" && isDefault(f, v)) continue;
      out[f.protoName] = this.encodeSingle(f, v);
    }
    return out;
  }

  private encodeSingle(f: ProtoField, v: unknown): unknown {
    switch (f.kind) {
      case "int64": case "uint64": return BigInt(v as bigint | number).toString();
      case "int32": case "uint32": return Number(v);
      case "bool": case "string": return v;
      case "bytes": return Buffer.from(v as Uint8Array).toString("base64");
      case "enum": {
        const hit = this.schema.enums[f.typeName!].values.find(([, n]) => n === v);
        return hit === undefined ? Number(v) : hit[0];
      }
      case "message": return this.toJson(f.typeName!, v);
    }
  }

  private message(type: string): { fields: ProtoField[] } {
    const m = this.schema.messages[type];
    if (m === undefined) throw new Error(`gateway: unknown message ${type}`);
    return m;
  }
}

function isDefault(f: ProtoField, v: unknown): boolean {
  switch (f.kind) {
    case "int64": case "uint64": return BigInt(v as bigint | number) === 0n;
    case "int32": case "uint32": case "enum": return Number(v) === 0;
    case "bool": return v === false;
    case "string": return v === "";
    case "bytes": return (v as Uint8Array).length === 0;
    default: return false;
  }
}

/** Go's registered enum name: package, then nested names joined by "_". */
function goEnumName(full: string): string {
  const [pkg, ...rest] = full.split(".");
  return `${pkg}.${rest.join("_")}`;
}
