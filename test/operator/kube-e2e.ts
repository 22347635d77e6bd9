/**
 * `npm run test:kube-e2e`: every end-to-end scenario on one real node. Takes the machine-wide
 * node lock, brings the node up once, builds the scenarios' images once, runs the node test files
 * one after another against it (they see KUBE_NODE_KUBECONFIG and KUBE_NODE_IMAGES and skip their
 * own set-up), and brings the node down. Extra arguments go to vitest (e.g. a file filter).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, openSync, readdirSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "./chart-render.js";
import { kubeBin, kubeMissing, kubeTools } from "./kube.js";
import { DEV_IMAGE, buildImages } from "./kube-node-env.js";

const missing = kubeMissing();
if (missing) {
  console.error(`kube-e2e: ${missing}`);
  process.exit(1);
}

const LOCK = "/tmp/etcd-ts-kube-node.lock";
const IMAGES = [DEV_IMAGE, "localhost/etcd-ts:v1", "localhost/etcd-ts:v2"];

function withLock(fn: () => number): number {
  // flock(1) on a file descriptor this process holds for the run.
  const fd = openSync(LOCK, "a");
  const held = spawnSync("flock", ["-w", "3600", "3"], { stdio: ["ignore", "inherit", "inherit", fd] as any });
  if (held.status !== 0) throw new Error(`could not take ${LOCK}`);
  try {
    return fn();
  } finally {
    closeSync(fd);
  }
}

const code = withLock(() => {
  const t0 = Date.now();
  const out = execFileSync("bash", [path.join(kubeTools, "node.sh"), "up"], { encoding: "utf8", env: { ...process.env, KUBE_BIN_DIR: kubeBin }, timeout: 300_000 });
  const kc = out.trim().split("\n").at(-1)!;
  console.log(`kube-e2e: node up in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  try {
    const t1 = Date.now();
    buildImages(IMAGES);
    console.log(`kube-e2e: images ${IMAGES.join(", ")} in ${((Date.now() - t1) / 1000).toFixed(0)} s`);
    const files =
      process.argv.slice(2).length > 0
        ? process.argv.slice(2)
        : readdirSync(path.join(repoRoot, "test/operator")).filter((f) => /-node.*\.test\.ts$/.test(f)).map((f) => `test/operator/${f}`);
    const r = spawnSync("npx", ["vitest", "run", "--no-file-parallelism", ...files], {
      cwd: repoRoot,
      stdio: "inherit",
      env: { ...process.env, KUBE_E2E: "1", KUBE_NODE_KUBECONFIG: kc, KUBE_NODE_IMAGES: IMAGES.join(",") },
    });
    return r.status ?? 1;
  } finally {
    execFileSync("bash", [path.join(kubeTools, "node.sh"), "down"], { stdio: "ignore", timeout: 300_000 });
  }
});
process.exit(code);
