import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["server/test/**/*.test.ts", "operator/test/**/*.test.ts", "test/**/*.test.ts"],
    exclude: [...configDefaults.exclude],
    // Integration tests start real processes on loopback ports; give them room on 2-core machines.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ["test/global-setup.ts"],
    pool: "forks",
  },
});
