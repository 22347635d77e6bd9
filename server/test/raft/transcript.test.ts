/**
 * Golden transcript tests for the Raft core. Each testdata/*.txt file is a script of commands for
 * InteractionEnv, each followed by `----` and its expected output, blocks separated by a blank
 * line; lines starting with # are comments. Output is compared exactly. Run with UPDATE_GOLDEN=1
 * to rewrite the expected output from the actual one.
 */
import { describe, it, expect } from "vitest";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { InteractionEnv, parseCommand } from "./interaction-env.js";

const dir = join(dirname(fileURLToPath(import.meta.url)), "testdata");

interface Block {
  preamble: string[];
  command: string;
  expected: string;
  line: number;
}

function parseScript(text: string): { blocks: Block[]; trailer: string[] } {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  let preamble: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const l = lines[i]!;
    if (l.trim() === "" || l.startsWith("#")) {
      preamble.push(l);
      i++;
      continue;
    }
    const command = l;
    const line = i + 1;
    i++;
    if (lines[i] !== "----") throw new Error(`line ${i + 1}: expected ---- after command "${command}"`);
    i++;
    const out: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== "") out.push(lines[i++]!);
    blocks.push({ preamble, command, expected: out.join("\n"), line });
    preamble = [];
  }
  return { blocks, trailer: preamble };
}

const files = readdirSync(dir).filter((f) => f.endsWith(".txt")).sort();

describe("raft golden transcripts", () => {
  for (const file of files) {
    it(file, () => {
      const path = join(dir, file);
      const { blocks, trailer } = parseScript(readFileSync(path, "utf8"));
      const env = new InteractionEnv();
      const actual: string[] = [];
      for (const b of blocks) actual.push(env.handle(parseCommand(b.command)));
      if (process.env["UPDATE_GOLDEN"] === "1") {
        const out: string[] = [];
        blocks.forEach((b, k) => {
          out.push(...b.preamble, b.command, "----", actual[k]!);
        });
        let text = out.join("\n") + "\n";
        const tail = trailer.filter((l) => l.startsWith("#"));
        if (tail.length > 0) text += "\n" + tail.join("\n") + "\n";
        writeFileSync(path, text);
        return;
      }
      blocks.forEach((b, k) => {
        expect(actual[k], `${file}:${b.line}: ${b.command}`).toBe(b.expected);
      });
    });
  }
});
