#!/usr/bin/env node
// Regenerates server/src/gen from proto/ with buf (compiler) and ts-proto (static TypeScript
// encoders/decoders and @grpc/grpc-js service definitions). The output is committed; run this
// after editing any .proto file: `npm run proto`.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
rmSync(path.join(root, "server/src/gen"), { recursive: true, force: true });
execFileSync(path.join(root, "node_modules/.bin/buf"), ["generate", "proto", "--template", "proto/buf.gen.yaml"], {
  cwd: root,
  stdio: "inherit",
});
