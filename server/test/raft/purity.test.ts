/**
 * The Raft core is pure (house style rule 2): no async code, timers, clocks, Math.random or I/O
 * under server/src/raft/, and it imports nothing outside its own folder.
 */
import { describe, it, expect } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const dir = join(dirname(fileURLToPath(import.meta.url)), "../../src/raft");

const forbidden: [RegExp, string][] = [
  [/\basync\b/, "async"],
  [/\bawait\b/, "await"],
  [/\bPromise\b/, "Promise"],
  [/\bsetTimeout\b|\bsetInterval\b|\bsetImmediate\b|\bqueueMicrotask\b/, "timers"],
  [/\bDate\b/, "Date"],
  [/\bperformance\b|\bhrtime\b/, "clocks"],
  [/Math\.random/, "Math.random"],
  [/from\s+["'](node:)?(fs|net|http|http2|child_process|dgram|tls|os|worker_threads)["']/, "I/O modules"],
];

describe("house style: the Raft core is pure", () => {
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
    it(file, () => {
      // Strip comments so that prose may mention these words.
      const src = readFileSync(join(dir, file), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
      for (const [re, what] of forbidden) expect(re.test(src), `${file} uses ${what}`).toBe(false);
      for (const m of src.matchAll(/from\s+["']([^"']+)["']/g)) {
        expect(m[1]!.startsWith("./"), `${file} imports ${m[1]}`).toBe(true);
      }
    });
  }
});
