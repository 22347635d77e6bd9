/**
 * Proof that the simulation's checkers can fail: with each of the Raft core's unsafe testing
 * knobs turned on, a bounded number of seeds must produce a reported violation.
 *
 *  - grantVoteWithoutLogCheck: voters ignore the candidate's log (§5.4.1), so a stale member
 *    wins and its log lacks committed entries (leader completeness);
 *  - commitPreviousTermByCounting: a leader commits an older term's entry once a majority holds
 *    it (the Raft paper's figure 8), which a later leader can overwrite. This needs a specific
 *    interleaving, so the search uses the "figure8-hunt" preset; a scripted figure-8 run checks
 *    the same detection deterministically.
 *
 * skipCheckQuorum has no test here: without lease-based reads it only costs liveness while a
 * cut-off leader stays in charge, and lease-based reads are not linearizable under partitions
 * even with check-quorum (a cut-off leader notices only at its next check, up to two election
 * timeouts later, while the others may elect a new leader after one; etcd's raft behaves the
 * same), so a stale read there would not be the knob's doing. The simulation runs with "safe"
 * (ReadIndex) reads.
 */
import { describe, expect, it } from "vitest";
import { PRESETS, runSimulation, type ProfileOverrides, type SimResult } from "./simulation.js";
import { runFigure8Script } from "./figure8-script.js";

interface Hunt {
  /** The first run in which one of the simulation's own checks fired. */
  found?: SimResult;
  tried: number;
  /** Runs before it that ended with the core throwing (its own invariants), not a check. */
  coreCrashes: number[];
}

/** Runs seeds 1.. until a safety or linearizability check fires (a core crash does not count). */
function hunt(overrides: ProfileOverrides, maxSeeds: number): Hunt {
  const coreCrashes: number[] = [];
  for (let seed = 1; seed <= maxSeeds; seed++) {
    const r = runSimulation(seed, overrides);
    if (r.ok) continue;
    if (safetyInvariants.includes(r.violation!.invariant)) return { found: r, tried: seed, coreCrashes };
    coreCrashes.push(seed);
  }
  return { tried: maxSeeds, coreCrashes };
}

function report(name: string, h: Hunt): void {
  const crashes = h.coreCrashes.length > 0 ? ` (before it, the core threw on seeds ${h.coreCrashes.join(" ")})` : "";
  if (h.found) {
    const v = h.found.violation!;
    console.log(`${name}: caught at seed=${h.found.seed} (after ${h.tried} seeds): ${v.invariant}: ${v.detail.split("\n")[0]}${crashes}`);
  } else {
    console.log(`${name}: NOT caught in ${h.tried} seeds${crashes}`);
  }
}

const safetyInvariants = [
  "election safety",
  "log matching",
  "leader completeness",
  "state machine safety",
  "committed entry changed",
  "linearizability",
];

describe("broken Raft variants are caught", () => {
  it("grantVoteWithoutLogCheck", () => {
    const h = hunt({ knobs: { grantVoteWithoutLogCheck: true } }, 300);
    report("grantVoteWithoutLogCheck", h);
    expect(h.found, "no violation reported").toBeDefined();
    expect(safetyInvariants).toContain(h.found!.violation!.invariant);
  }, 300_000);

  it("commitPreviousTermByCounting (random search)", () => {
    const h = hunt({ ...PRESETS["figure8-hunt"], knobs: { commitPreviousTermByCounting: true } }, 1500);
    report("commitPreviousTermByCounting", h);
    expect(h.found, "no violation reported").toBeDefined();
    expect(safetyInvariants).toContain(h.found!.violation!.invariant);
  }, 600_000);

  it("commitPreviousTermByCounting (scripted figure 8)", () => {
    const broken = runFigure8Script(true);
    expect(broken.violation?.invariant).toBe("leader completeness");
    const correct = runFigure8Script(false);
    expect(correct.violation).toBeUndefined();
    expect(correct.reachedEnd).toBe(true);
  });

  it("the figure-8 preset itself shows no violation without the knob", () => {
    for (let seed = 1; seed <= 100; seed++) {
      const r = runSimulation(seed, PRESETS["figure8-hunt"]);
      if (!r.ok) throw new Error(`seed=${seed} ${r.violation!.invariant}: ${r.violation!.detail}`);
    }
  }, 300_000);
});
