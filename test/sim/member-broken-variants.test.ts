/**
 * Proof that the simulation of real members catches broken variants of the real code: with each
 * deliberately broken knob turned on, a bounded number of seeds must produce a failure reported
 * by one of the simulation's own checks (a crash of the code's own invariants does not count).
 *
 *  - applyBeforeFsync (the Ready loop): followers acknowledge, and every member applies, entries
 *    whose WAL write is not durable yet; a crash then loses acknowledged writes;
 *  - skipEventOnCatchUp (the watch hub): a watcher catching up loses an event;
 *  - grantVoteWithoutLogCheck (the Raft core): a member with a stale log wins an election.
 * Each hunt prints the seed that caught it, so it replays with `SEED=n SIM_KNOB=name npm run sim`.
 */
import { describe, expect, it } from "vitest";
import { knobsByName, realProfile, runRealSimulation, type RealSimOverrides, type RealSimResult } from "./real-simulation.js";

/** Failures that are the code crashing on its own invariants, not a check of the simulation. */
function isOwnInvariant(failure: string): boolean {
  return failure.startsWith("exception:") || failure.includes("halted");
}

async function hunt(knob: string, maxSeeds: number, overrides: RealSimOverrides = {}): Promise<{ found?: RealSimResult; tried: number }> {
  for (let seed = 1; seed <= maxSeeds; seed++) {
    const r = await runRealSimulation(realProfile(seed, { ...overrides, knobs: knobsByName([knob]) }));
    if (!r.ok && !isOwnInvariant(r.failure!)) {
      console.log(`${knob}: caught at seed=${seed}: ${r.failure!.split("\n")[0]}`);
      return { found: r, tried: seed };
    }
  }
  console.log(`${knob}: NOT caught in ${maxSeeds} seeds`);
  return { tried: maxSeeds };
}

describe("broken variants of the real member are caught", () => {
  it("applyBeforeFsync", async () => {
    expect((await hunt("applyBeforeFsync", 300)).found).toBeDefined();
  }, 300_000);

  it("skipEventOnCatchUp", async () => {
    const h = await hunt("skipEventOnCatchUp", 50);
    expect(h.found?.failure).toMatch(/^watch: .* skipped/);
  }, 120_000);

  it("grantVoteWithoutLogCheck", async () => {
    expect((await hunt("grantVoteWithoutLogCheck", 600)).found).toBeDefined();
  }, 600_000);
});
