/**
 * What the gRPC differential tests share: a side is one server (etcd 3.4 or etcd-ts) with its
 * clients and a transcript; a script runs on both sides at once and their transcripts must match.
 */
import { expect } from "vitest";
import type { Member } from "../harness/member.js";
import { killAllChildren } from "../harness/processes.js";

/** One server under comparison, as each test file's own Side class shapes it. */
export interface TranscriptSide {
  /** What the script saw, a line per step. */
  readonly log: string[];
  readonly member: Member;
  /** Closes the side's clients. */
  close(): void;
}

/**
 * Runs `script` on every side side by side and expects the candidate's transcript (the second
 * side) to equal the reference's (the first). SHOW_TRANSCRIPTS=1 prints the reference's.
 */
export async function compareTranscripts<S extends TranscriptSide>(sides: readonly S[], script: (s: S) => Promise<void>): Promise<void> {
  for (const s of sides) s.log.length = 0;
  await Promise.all(sides.map((s) => script(s)));
  if (process.env.SHOW_TRANSCRIPTS === "1") console.log(sides[0]!.log.join("\n"));
  expect(sides[1]!.log.join("\n")).toBe(sides[0]!.log.join("\n"));
}

/** Closes every side's clients, then stops the servers and any child left. */
export async function closeSides(sides: readonly TranscriptSide[]): Promise<void> {
  for (const s of sides) s.close();
  await Promise.all(sides.map((s) => s.member.destroy()));
  await killAllChildren();
}
