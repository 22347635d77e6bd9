/**
 * Builds the JSON gateway's message table (server/src/api/gateway/schema.ts) from the .proto
 * files in proto/ and the ts-proto output in proto/gen: for every message, its fields in
 * declaration order with the proto name (what grpc-gateway writes), the JSON camel name (which it
 * also accepts), the property name ts-proto gave the field, and the field's type.
 *
 * `npm run proto` runs it after regenerating proto/gen. A unit test
 * (server/test/api/gateway/schema.test.ts) fails while the committed table is stale.
 *
 * The parser understands the proto3 subset the etcd-ts protos use: package, import, message
 * (nested), enum (nested), oneof, repeated, scalar/enum/message field types, comments. Anything
 * else (map, options with bodies) is rejected with an error naming the line.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ProtoField, ProtoSchema, ScalarKind } from "../server/src/api/gateway/json-mapping.js";

const SCALARS = new Set<string>(["int64", "uint64", "int32", "uint32", "bool", "string", "bytes"]);

/** protoc's default json_name: drop underscores, upper-case the letter after each. */
export function jsonNameOf(protoName: string): string {
  return protoName.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()).replace(/_/g, "");
}

interface RawField { name: string; number: number; repeated: boolean; oneof?: string; type: string; scope: string }

/** Tokenises one .proto file (comments dropped). */
function tokens(text: string): string[] {
  const stripped = text.replace(/\/\/[^\n]*/g, "").replace(/\/\*[\s\S]*?\*\//g, "");
  return stripped.match(/"[^"]*"|[A-Za-z_][A-Za-z0-9_.]*|-?\d+|[{}=;<>,()[\]]/g) ?? [];
}

/**
 * Parses one .proto file into raw messages and enums (types not yet resolved).
 * Throws on constructs outside the supported subset.
 */
export function parseProto(text: string): {
  pkg: string;
  messages: Map<string, RawField[]>;
  enums: Map<string, Array<[string, number]>>;
} {
  const t = tokens(text);
  let i = 0;
  let pkg = "";
  const messages = new Map<string, RawField[]>();
  const enums = new Map<string, Array<[string, number]>>();
  const expect = (s: string): void => {
    if (t[i] !== s) throw new Error(`proto parse: expected '${s}' at token ${i}, got '${t[i]}'`);
    i++;
  };
  const skipStatement = (): void => {
    while (i < t.length && t[i] !== ";") i++;
    i++;
  };
  const parseEnum = (full: string): void => {
    expect("{");
    const values: Array<[string, number]> = [];
    while (t[i] !== "}") {
      if (t[i] === "option" || t[i] === "reserved") { skipStatement(); continue; }
      const name = t[i++];
      expect("=");
      values.push([name, Number(t[i++])]);
      skipStatement();
    }
    expect("}");
    enums.set(full, values);
  };
  const parseBody = (full: string): void => {
    expect("{");
    const fields: RawField[] = [];
    messages.set(full, fields);
    let oneof: string | undefined;
    for (let guard = 0; guard < 100_000; guard++) {
      const tok = t[i];
      if (tok === undefined) throw new Error(`proto parse: unexpected end in ${full}`);
      if (tok === "}") {
        i++;
        if (oneof !== undefined) { oneof = undefined; continue; }
        return;
      }
      if (tok === "message") { i++; const name = t[i++]; parseBody(`${full}.${name}`); continue; }
      if (tok === "enum") { i++; const name = t[i++]; parseEnum(`${full}.${name}`); continue; }
      if (tok === "oneof") { i++; oneof = t[i++]; expect("{"); continue; }
      if (tok === "option" || tok === "reserved") { skipStatement(); continue; }
      if (tok === "map") throw new Error(`proto parse: map fields are not supported (${full})`);
      let repeated = false;
      if (tok === "repeated") { repeated = true; i++; }
      const type = t[i++];
      const name = t[i++];
      expect("=");
      const number = Number(t[i++]);
      if (t[i] === "[") { while (t[i] !== "]") i++; i++; }
      expect(";");
      fields.push({ name, number, repeated, oneof, type, scope: full });
    }
    throw new Error("proto parse: message too long");
  };
  while (i < t.length) {
    const tok = t[i];
    if (tok === "syntax" || tok === "import" || tok === "option") { skipStatement(); continue; }
    if (tok === "package") { i++; pkg = t[i++]; expect(";"); continue; }
    if (tok === "message") { i++; const name = t[i++]; parseBody(`${pkg}.${name}`); continue; }
    if (tok === "enum") { i++; const name = t[i++]; parseEnum(`${pkg}.${name}`); continue; }
    if (tok === "service") {
      // Services carry no JSON shape; skip the block.
      let depth = 0;
      for (; i < t.length; i++) {
        if (t[i] === "{") depth++;
        if (t[i] === "}" && --depth === 0) { i++; break; }
      }
      continue;
    }
    throw new Error(`proto parse: unexpected '${tok}' at top level`);
  }
  return { pkg, messages, enums };
}

/** Property names of each exported interface in a ts-proto output file. */
export function tsInterfaceProps(source: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const re = /^export interface (\w+) \{\n([\s\S]*?)^\}/gm;
  for (let m = re.exec(source); m !== null; m = re.exec(source)) {
    const props: string[] = [];
    for (const line of m[2].split("\n")) {
      const p = /^ {2}(\w+)\??:/.exec(line);
      if (p) props.push(p[1]);
    }
    out.set(m[1], props);
  }
  return out;
}

/** Resolves a field's type name the way protoc does: innermost scope outwards. */
function resolve(type: string, scope: string, known: Set<string>): string {
  if (type.includes(".") && known.has(type)) return type;
  const parts = scope.split(".");
  for (let n = parts.length; n >= 1; n--) {
    const candidate = `${parts.slice(0, n).join(".")}.${type}`;
    if (known.has(candidate)) return candidate;
  }
  throw new Error(`proto parse: unknown type ${type} in ${scope}`);
}

/** The ts-proto interface name of a message: package dropped, nesting joined with "_". */
function tsTypeName(full: string): string {
  return full.split(".").slice(1).join("_");
}

/**
 * Builds the schema from .proto sources and the matching ts-proto sources. Every field must
 * find its ts-proto property (names compared without case and underscores), or this throws.
 */
export function buildSchema(protoSources: string[], tsSources: string[]): ProtoSchema {
  const rawMessages = new Map<string, RawField[]>();
  const rawEnums = new Map<string, Array<[string, number]>>();
  for (const src of protoSources) {
    const p = parseProto(src);
    for (const [k, v] of p.messages) rawMessages.set(k, v);
    for (const [k, v] of p.enums) rawEnums.set(k, v);
  }
  const tsProps = new Map<string, string[]>();
  for (const src of tsSources) for (const [k, v] of tsInterfaceProps(src)) tsProps.set(k, v);
  const known = new Set<string>([...rawMessages.keys(), ...rawEnums.keys()]);
  const norm = (s: string): string => s.replace(/_/g, "").toLowerCase();
  const schema: ProtoSchema = { messages: {}, enums: {} };
  for (const [name, values] of [...rawEnums].sort(([a], [b]) => a.localeCompare(b))) schema.enums[name] = { values };
  for (const [name, raw] of [...rawMessages].sort(([a], [b]) => a.localeCompare(b))) {
    const props = tsProps.get(tsTypeName(name));
    if (props === undefined) throw new Error(`no ts-proto interface for ${name}`);
    const fields: ProtoField[] = raw.map((f) => {
      const tsName = props.find((p) => norm(p) === norm(f.name));
      if (tsName === undefined) throw new Error(`no ts-proto property for ${name}.${f.name}`);
      const field: ProtoField = {
        protoName: f.name, jsonName: jsonNameOf(f.name), tsName, number: f.number, repeated: f.repeated,
        kind: "message",
      };
      if (f.oneof !== undefined) field.oneof = f.oneof;
      if (SCALARS.has(f.type)) {
        field.kind = f.type as ScalarKind;
      } else {
        const full = resolve(f.type, f.scope, known);
        field.kind = rawEnums.has(full) ? "enum" : "message";
        field.typeName = full;
      }
      return field;
    });
    schema.messages[name] = { fields };
  }
  return schema;
}

/** The gateway schema module, relative to the checkout. */
const SCHEMA_FILE = "server/src/api/gateway/schema.ts";

/** The source text of the gateway schema module for `schema`. */
export function renderSchema(schema: ProtoSchema): string {
  return [
    "// Generated by scripts/gateway-schema-gen.ts (npm run proto) from proto/ and proto/gen;",
    "// do not edit by hand.",
    'import type { ProtoSchema } from "./json-mapping.js";',
    "",
    `export const GATEWAY_SCHEMA: ProtoSchema = ${JSON.stringify(schema, null, 1)};`,
    "",
  ].join("\n");
}

/** The proto and ts-proto sources the gateway schema is built from, read from a checkout. */
export function checkoutSources(root: string): { proto: string[]; ts: string[] } {
  const files = ["mvccpb/kv", "authpb/auth", "etcdserverpb/rpc", "v3lockpb/v3lock", "v3electionpb/v3election"];
  return {
    proto: files.map((f) => fs.readFileSync(path.join(root, "proto", `${f}.proto`), "utf8")),
    ts: files.map((f) => fs.readFileSync(path.join(root, "proto/gen", `${f}.ts`), "utf8")),
  };
}

const self = fileURLToPath(import.meta.url);
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === self) {
  const root = path.resolve(path.dirname(self), "..");
  const { proto, ts } = checkoutSources(root);
  fs.writeFileSync(path.join(root, SCHEMA_FILE), renderSchema(buildSchema(proto, ts)));
}
