/**
 * The cluster simulation, quick tier: ~100 seeds of the normal fault mix must show no violation,
 * and the simulation's own checks must fire when a fault is injected straight into the
 * simulated state machine or the read path. `SEED=n` starts the range at n, `RUNS=n` sets its
 * length; a failure names the seed to replay with `SEED=n TRACE=1 npm run sim`.
 */
import { describe, expect, it } from "vitest";
import { runSimulation, type SimResult } from "./simulation.js";

const baseSeed = Number(process.env["SEED"] ?? 1);
const runs = Number(process.env["RUNS"] ?? 100);

function describeFailure(r: SimResult): string {
  return `seed=${r.seed} ${r.violation?.invariant}: ${r.violation?.detail.split("\n").slice(0, 8).join("\n")}\n  profile: ${r.profile}`;
}

describe("cluster simulation", () => {
  it(`shows no violation over ${runs} seeds from ${baseSeed}`, () => {
    const failures: string[] = [];
    let ops = 0;
    for (let seed = baseSeed; seed < baseSeed + runs; seed++) {
      const r = runSimulation(seed);
      ops += r.stats.ops;
      if (!r.ok) failures.push(describeFailure(r));
    }
    if (failures.length > 0) console.log(failures.join("\n"));
    expect(failures).toEqual([]);
    expect(ops).toBeGreaterThan(runs * 10);
  }, 300_000);

  it("replays a seed exactly", () => {
    const a = runSimulation(baseSeed + 7);
    const b = runSimulation(baseSeed + 7);
    expect(b).toEqual(a);
  });
});

describe("the simulation's checks fire on injected faults", () => {
  it("state machine safety: one member's state machine diverges", () => {
    let found: SimResult | undefined;
    for (let seed = 1; seed <= 50 && !found; seed++) {
      const r = runSimulation(seed, { divergentApply: true });
      if (!r.ok) found = r;
    }
    expect(found, "no violation in 50 seeds").toBeDefined();
    console.log(`divergent apply caught: seed=${found!.seed} ${found!.violation!.invariant}: ${found!.violation!.detail.split("\n")[0]}`);
    expect(found!.violation!.invariant).toBe("state machine safety");
  });

  it("linearizability: gets served from the local state machine without ReadIndex", () => {
    let found: SimResult | undefined;
    for (let seed = 1; seed <= 300 && !found; seed++) {
      const r = runSimulation(seed, { staleReads: true });
      if (!r.ok) found = r;
    }
    expect(found, "no violation in 300 seeds").toBeDefined();
    console.log(`stale reads caught: seed=${found!.seed} ${found!.violation!.invariant}: ${found!.violation!.detail.split("\n")[0]}`);
    expect(found!.violation!.invariant).toBe("linearizability");
  }, 300_000);
});
