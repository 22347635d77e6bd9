#!/usr/bin/env node
// Lays out the container image's /app from a built workspace (after `npm run build`):
//   package.json, node_modules (production dependencies only, as `npm ls --omit=dev` lists them,
//   workspace links kept as relative symlinks), proto/{package.json,dist},
//   server/{package.json,bin,dist}, operator/{package.json,bin,dist}.
// The Dockerfile runs it in its build stage and the Kubernetes tests run it before
// `images.sh app`, so both images have the same files. Usage: node scripts/assemble-image.mjs OUT
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = process.argv[2];
if (!out) {
  console.error("usage: assemble-image.mjs OUT");
  process.exit(2);
}
/** Files of the workspace packages that the image carries. */
export const IMAGE_FILES = [
  "package.json",
  "proto/package.json",
  "proto/dist",
  "server/package.json",
  "server/bin",
  "server/dist",
  "operator/package.json",
  "operator/bin",
  "operator/dist",
];

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const f of IMAGE_FILES) {
  const src = path.join(root, f);
  if (!existsSync(src)) throw new Error(`${f} is missing: run npm run build first`);
  cpSync(src, path.join(out, f), { recursive: true, verbatimSymlinks: true, filter: (s) => !s.endsWith(".tsbuildinfo") && !s.endsWith(".map") });
}
const listed = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable"], { cwd: root, encoding: "utf8", maxBuffer: 64 << 20 })
  .split("\n")
  .filter((l) => l.startsWith(path.join(root, "node_modules") + path.sep));
for (const abs of listed) {
  const rel = path.relative(root, abs);
  cpSync(abs, path.join(out, rel), { recursive: true, verbatimSymlinks: true, force: false, errorOnExist: false });
}
const count = readdirSync(path.join(out, "node_modules")).length;
console.log(`assembled ${out}: ${listed.length} packages (${count} top-level entries)`);
