import { defineConfig } from "vitest/config";

/**
 * Runs only the simulation's tests, without the repository-wide global setup (which builds the
 * whole server): `npx vitest run --config test/sim/vitest.sim.config.ts`.
 */
export default defineConfig({
  test: {
    include: ["test/sim/**/*.test.ts"],
    testTimeout: 600_000,
    pool: "forks",
  },
});
