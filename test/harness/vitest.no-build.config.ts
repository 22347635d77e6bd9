import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * Runs the cross-process suites (test/etcdctl, test/crash) without building the server first:
 * for runs against real etcd only (`ETCD_BIN=/usr/bin/etcd`), or when dist/ is already built.
 *   npx vitest run --config test/harness/vitest.no-build.config.ts test/etcdctl
 */
export default defineConfig({
  root: path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", ".."),
  test: {
    include: ["test/etcdctl/**/*.test.ts", "test/crash/**/*.test.ts", "test/cluster/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
