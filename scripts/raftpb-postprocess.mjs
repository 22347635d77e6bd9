#!/usr/bin/env node
// Makes ts-proto's raftpb encoders write what etcd's marshaller writes (proto/raftpb/raft.proto
// states the contract). ts-proto skips a field holding its zero value; etcd writes its
// non-nullable fields always, and its nullable bytes whenever they are set, even empty:
//   if (message.f !== 0n) {                                       →  {
//   if (message.f !== undefined && message.f.length !== 0) {      →  if (message.f !== undefined) {
//   if (message.f !== undefined) {  T.encode(message.f, ...       →  {  T.encode(message.f ?? createBaseT(), ...
//   message.f = object.f ?? Buffer.alloc(0);   (fromPartial)      →  message.f = object.f ?? undefined;
// Every "required" field of the .proto is one of the first or the last kind. The rewrite counts
// what it changed and fails unless it matches the number of such fields, so a ts-proto upgrade
// that changes its output cannot slip through silently. Run by scripts/gen-proto.mjs.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const protoFile = path.join(root, "proto/raftpb/raft.proto");
const genFile = path.join(root, "proto/gen/raftpb/raft.ts");

const proto = readFileSync(protoFile, "utf8");
const requiredFields = (proto.match(/^\s*required\s/gm) ?? []).length;
const optionalBytes = (proto.match(/^\s*optional\s+bytes\s/gm) ?? []).length;

let src = readFileSync(genFile, "utf8");
let scalars = 0;
let messages = 0;
let bytes = 0;
src = src.replace(/^( +)if \(message\.(\w+) !== (?:0n|0|false)\) \{$/gm, (_m, indent) => {
  scalars++;
  return `${indent}{`;
});
src = src.replace(/^( +)if \(message\.(\w+) !== undefined\) \{\n( +)(\w+)\.encode\(message\.\2, /gm, (_m, indent, field, inner, type) => {
  messages++;
  return `${indent}{\n${inner}${type}.encode(message.${field} ?? createBase${type}(), `;
});
src = src.replace(/^( +)if \(message\.(\w+) !== undefined && message\.\2\.length !== 0\) \{$/gm, (_m, indent, field) => {
  bytes++;
  return `${indent}if (message.${field} !== undefined) {`;
});
// fromPartial would make an absent bytes field present (empty), which is then written
let partials = 0;
src = src.replace(/^( +)message\.(\w+) = object\.\2 \?\? Buffer\.alloc\(0\);$/gm, (_m, indent, field) => {
  partials++;
  return `${indent}message.${field} = object.${field} ?? undefined;`;
});
if (scalars + messages !== requiredFields || bytes !== optionalBytes || partials !== optionalBytes) {
  console.error(
    `raftpb-postprocess: rewrote ${scalars} scalar and ${messages} message guards (want ${requiredFields} in all) and ` +
      `${bytes} bytes guards and ${partials} fromPartial defaults (want ${optionalBytes} each); ts-proto's output changed, update this script`,
  );
  process.exit(1);
}
writeFileSync(genFile, src);
