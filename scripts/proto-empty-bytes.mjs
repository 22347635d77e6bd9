#!/usr/bin/env node
// Makes ts-proto's decoders start each message with one shared empty Buffer for its bytes fields
// instead of a fresh `Buffer.alloc(0)` each: every decoded request (a put's key and value, a
// range's key and range end) allocated two Buffer objects that the decoder then replaced. A
// zero-length Buffer has no bytes to change, so sharing it is safe; only the createBase*
// functions (whose result the decoder fills in) are rewritten, fromPartial keeps its own.
// The rewrite checks that it found every default it expects, so a ts-proto upgrade that changes
// its output cannot slip through silently. Run by scripts/gen-proto.mjs.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const genDir = path.join(root, "proto/gen");
const IMPORT_LINE = 'import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";\n';
const CONSTANT = "\n/** The default of every bytes field of a decoded message (shared: it has no bytes to change). */\nconst EMPTY_BYTES = Buffer.alloc(0);\n";

function* tsFiles(dir) {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (name.endsWith(".ts")) yield p;
  }
}

let total = 0;
let already = 0;
for (const file of tsFiles(genDir)) {
  let src = readFileSync(file, "utf8");
  if (src.includes("\nconst EMPTY_BYTES = ")) {
    already++;
    continue;
  }
  let count = 0;
  src = src.replace(/^function createBase\w+\(\): \w+ \{\n[\s\S]*?^\}$/gm, (fn) =>
    fn.replace(/Buffer\.alloc\(0\)/g, () => {
      count++;
      return "EMPTY_BYTES";
    }),
  );
  if (count === 0) continue;
  // Every Buffer.alloc(0) left must be a fromPartial default (`object.f ?? Buffer.alloc(0)`).
  const left = (src.match(/Buffer\.alloc\(0\)/g) ?? []).length;
  const partials = (src.match(/= object\.\w+ \?\? Buffer\.alloc\(0\);$/gm) ?? []).length;
  if (left !== partials || !src.includes(IMPORT_LINE)) {
    console.error(`proto-empty-bytes: ${path.relative(root, file)}: unexpected ts-proto output (${left} defaults left, ${partials} in fromPartial); update this script`);
    process.exit(1);
  }
  src = src.replace(IMPORT_LINE, IMPORT_LINE + CONSTANT);
  writeFileSync(file, src);
  total += count;
}
if (total === 0 && already === 0) {
  console.error("proto-empty-bytes: no createBase* default rewritten; ts-proto's output changed, update this script");
  process.exit(1);
}
if (total > 0) console.log(`proto-empty-bytes: ${total} bytes defaults share one empty Buffer`);
