import { defineConfig } from "vitest/config";

/**
 * Runs only the Raft core's tests, without the repository-wide global setup (which builds the
 * whole server): `npx vitest run --config server/test/raft/vitest.raft.config.ts`.
 */
export default defineConfig({
  test: {
    include: ["server/test/raft/**/*.test.ts"],
    testTimeout: 120_000,
    pool: "forks",
  },
});
