/**
 * The container image as the Dockerfile defines it, read from the Dockerfile itself, and the
 * tests' equivalent: scripts/assemble-image.mjs lays out /app (the Dockerfile's build stage runs
 * the same script) and `images.sh app NAME DIR` wraps it with the host's node; its Cmd is the
 * Dockerfile's ENTRYPOINT + CMD.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "./chart-render.js";

export interface DockerfileFacts {
  entrypoint: string[];
  cmd: string[];
  user: string;
  workdir: string;
  /** Whether the build stage lays out /app with scripts/assemble-image.mjs. */
  usesAssembleScript: boolean;
  nodeVersion: string;
}

export function dockerfileFacts(): DockerfileFacts {
  const text = readFileSync(path.join(repoRoot, "Dockerfile"), "utf8");
  const last = text.slice(text.lastIndexOf("\nFROM "));
  const json = (re: RegExp) => JSON.parse(re.exec(last)?.[1] ?? "[]") as string[];
  return {
    entrypoint: json(/^ENTRYPOINT (\[.*\])$/m),
    cmd: json(/^CMD (\[.*\])$/m),
    user: /^USER (\S+)$/m.exec(last)?.[1] ?? "",
    workdir: /^WORKDIR (\S+)$/m.exec(last)?.[1] ?? "",
    usesAssembleScript: /node scripts\/assemble-image\.mjs \/app/.test(text) && /COPY --from=build \/app \/app/.test(last),
    nodeVersion: /^ARG NODE_VERSION=(\d+)$/m.exec(text)?.[1] ?? "",
  };
}

/** Lays out the image's /app from this checkout's build into `out`. */
export function assembleImage(out: string): void {
  execFileSync(process.execPath, [path.join(repoRoot, "scripts/assemble-image.mjs"), out], { stdio: "ignore" });
}

/** `images.sh app`'s APP_CMD for a mode ("etcd" or "operator"): the Dockerfile's entrypoint with the host's node. */
export function appCmd(mode: string): string[] {
  const f = dockerfileFacts();
  return ["/usr/bin/node", ...f.entrypoint.slice(1), mode];
}
