/** Runs seeds of the real-member simulation in this process: `SEED=n` or `SEEDS=a-b`. */
import { realProfile, runRealSimulation } from "./real-simulation.js";

const env = process.env;
const [a, b] = env["SEED"] ? [Number(env["SEED"]), Number(env["SEED"])] : (env["SEEDS"] ?? "1-20").split("-").map(Number);
let failed = 0;
const t0 = Date.now();
for (let seed = a!; seed <= b!; seed++) {
  const s0 = Date.now();
  const r = await runRealSimulation(realProfile(seed));
  const line = `seed=${seed} ${r.ok ? "ok" : "FAILED " + r.failure} ${r.linearizability} ${JSON.stringify(r.stats)} ${Date.now() - s0}ms`;
  console.log(line);
  if (!r.ok) failed++;
}
console.log(`${b! - a! + 1 - failed} passed, ${failed} failed (${Date.now() - t0} ms)`);
process.exitCode = failed > 0 ? 1 : 0;
