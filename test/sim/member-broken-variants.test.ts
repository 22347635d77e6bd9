/**
 * Proof that the simulation of real members catches broken variants of the real code: with each
 * deliberately broken knob turned on, one of the simulation's own checks must fire (a crash of
 * the code's own invariants does not count), either in a bounded hunt over random seeds or in a
 * scripted run (member-scripts.ts); and the same seed or script without the knob passes.
 *
 *  - applyBeforeFsync (the Ready loop): followers acknowledge, and every member applies, entries
 *    whose WAL write is not durable yet; a crash then loses acknowledged writes;
 *  - skipEventOnCatchUp (the watch hub): a watcher catching up loses an event;
 *  - grantVoteWithoutLogCheck (the raft core): a member with a stale log wins an election;
 *  - commitPreviousTermByCounting (the raft core): a leader commits an older term's entry by
 *    counting replicas, which a later leader overwrites (the Raft paper's figure 8): the scripted
 *    figure 8, and a hunt with the "figure8-hunt" preset (leader churn, one entry per message);
 *  - commitBeyondLastNewEntry (the raft core): a follower commits past the last entry the
 *    leader's message confirmed, so a stale tail of its log gets committed and applied. Only the
 *    script catches it: a correct leader never sends the message that exposes it (its fast
 *    back-off starts at the first conflicting entry, and any message it sends a follower within
 *    its term covers the follower's log up to where it diverges), so no random run can reach it.
 * Each prints the seed or script that caught it: replay a seed with
 * `SEED=n SIM_KNOB=name [SIM_PRESET=figure8-hunt] TRACE=1 npm run sim`.
 */
import { describe, expect, it } from "vitest";
import { knobsByName, PRESETS, realProfile, runRealSimulation, type RealSimOverrides, type RealSimResult } from "./real-simulation.js";
import { runFigure8Script, runStaleTailScript, type ScriptResult } from "./member-scripts.js";

/** Failures that are the code crashing on its own invariants, not a check of the simulation. */
function isOwnInvariant(failure: string): boolean {
  return failure.startsWith("exception:") || failure.includes("halted");
}

/**
 * Runs seeds 1..maxSeeds with the knob until a check fires; the seed that caught it must then
 * pass without the knob.
 */
async function hunt(knob: string, maxSeeds: number, overrides: RealSimOverrides = {}): Promise<RealSimResult | undefined> {
  for (let seed = 1; seed <= maxSeeds; seed++) {
    const r = await runRealSimulation(realProfile(seed, { ...overrides, knobs: knobsByName([knob]) }));
    if (!r.ok && !isOwnInvariant(r.failure!)) {
      console.log(`${knob}: caught at seed=${seed}: ${r.failure!.split("\n")[0]}`);
      const control = await runRealSimulation(realProfile(seed, overrides));
      expect(control.failure, `seed=${seed} without ${knob}`).toBeUndefined();
      return r;
    }
  }
  console.log(`${knob}: NOT caught in ${maxSeeds} seeds`);
  return undefined;
}

/** With the knob a check fires; without it the script runs to its end cleanly. */
async function script(knob: string, run: (broken: boolean) => Promise<ScriptResult>): Promise<ScriptResult> {
  const broken = await run(true);
  const v = broken.violation;
  console.log(`${knob}: ${v ? `caught by the script: ${v.invariant}: ${v.detail}` : "NOT caught by the script"}`);
  const correct = await run(false);
  expect(correct.violation, `the script without ${knob}`).toBeUndefined();
  expect(correct.reachedEnd).toBe(true);
  return broken;
}

describe("broken variants of the real member are caught", () => {
  it("applyBeforeFsync", async () => {
    expect(await hunt("applyBeforeFsync", 300)).toBeDefined();
  }, 300_000);

  it("skipEventOnCatchUp", async () => {
    const r = await hunt("skipEventOnCatchUp", 50);
    expect(r?.failure).toMatch(/^watch: .* skipped/);
  }, 120_000);

  it("grantVoteWithoutLogCheck", async () => {
    expect(await hunt("grantVoteWithoutLogCheck", 600)).toBeDefined();
  }, 600_000);

  it("commitPreviousTermByCounting (the scripted figure 8)", async () => {
    const r = await script("commitPreviousTermByCounting", (broken) => runFigure8Script(broken));
    expect(r.violation?.invariant).toBe("leader completeness");
  }, 60_000);

  it("commitPreviousTermByCounting (hunt with the figure8-hunt preset)", async () => {
    expect(await hunt("commitPreviousTermByCounting", 100, PRESETS["figure8-hunt"])).toBeDefined();
  }, 300_000);

  it("commitBeyondLastNewEntry (scripted: a follower's stale tail)", async () => {
    const r = await script("commitBeyondLastNewEntry", (broken) => runStaleTailScript(broken));
    expect(r.violation?.invariant).toMatch(/^(committed entry changed|state machine safety|log matching)$/);
  }, 60_000);
});
