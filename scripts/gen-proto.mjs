#!/usr/bin/env node
// Regenerates proto/gen (the @etcd-ts/proto package's source) from proto/ with buf (compiler,
// fetched from the npm registry at a pinned version on first use) and ts-proto (static TypeScript
// encoders/decoders and @grpc/grpc-js service definitions), makes the raftpb encoders write what
// etcd writes (scripts/raftpb-postprocess.mjs), shares the decoders' empty bytes defaults
// (scripts/proto-empty-bytes.mjs), compiles it to proto/dist, then
// writes the JSON gateway's message table (server/src/api/gateway/schema.ts) with
// scripts/gateway-schema-gen.ts. The output is committed; run this after editing any .proto
// file: `npm run proto`.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
rmSync(path.join(root, "proto/gen"), { recursive: true, force: true });
const BUF_VERSION = "1.75.0";
execFileSync("npx", ["--yes", `@bufbuild/buf@${BUF_VERSION}`, "generate", "proto", "--template", "proto/buf.gen.yaml"], {
  cwd: root,
  stdio: "inherit",
});
execFileSync(process.execPath, [path.join(root, "scripts/raftpb-postprocess.mjs")], { cwd: root, stdio: "inherit" });
execFileSync(process.execPath, [path.join(root, "scripts/proto-empty-bytes.mjs")], { cwd: root, stdio: "inherit" });
execFileSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-b", "proto"], { cwd: root, stdio: "inherit" });
execFileSync(process.execPath, ["--import", "tsx", "scripts/gateway-schema-gen.ts"], { cwd: root, stdio: "inherit" });
