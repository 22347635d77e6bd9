/**
 * The golden cases of testdata/raftpb-golden.json (written by etcd 3.4's own code, see
 * golden/gen-golden.sh) and their conversion to our raft model.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ConfState, Entry, Message, Snapshot } from "../../src/raft/types.js";

export interface JEntry {
  type: number;
  term: string;
  index: string;
  data: string | null;
}

export interface JMessage {
  type: number;
  to: string;
  from: string;
  term: string;
  logTerm: string;
  index: string;
  entries: JEntry[];
  commit: string;
  snapshot: {
    data: string | null;
    index: string;
    term: string;
    voters: string[];
    learners: string[];
    votersOutgoing: string[];
    learnersNext: string[];
    autoLeave: boolean;
  };
  reject: boolean;
  rejectHint: string;
  context: string | null;
}

export interface Golden {
  encode: { name: string; message: JMessage; hex: string; frame: string }[];
  decode: { name: string; hex: string; message: JMessage | null; error?: string }[];
  msgappv2: { name: string; local: string; remote: string; input: JMessage[]; frames: string[]; output: JMessage[] }[];
}

const here = path.dirname(fileURLToPath(import.meta.url));
export const golden: Golden = JSON.parse(readFileSync(path.join(here, "testdata/raftpb-golden.json"), "utf8")) as Golden;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function hex(s: string | null): Uint8Array {
  return s === null ? new Uint8Array(0) : Uint8Array.from(Buffer.from(s, "hex"));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** Whether every term/index of the message fits our model (below 2^53). */
export function fitsModel(j: JMessage): boolean {
  const nums = [j.term, j.logTerm, j.index, j.commit, j.rejectHint, j.snapshot.index, j.snapshot.term];
  for (const e of j.entries) nums.push(e.term, e.index);
  return nums.every((n) => BigInt(n) <= MAX_SAFE);
}

function ids(list: string[]): bigint[] {
  return list.map((s) => BigInt(s));
}

/** The message in our model (etcd's empty snapshot is no snapshot; absent bytes are empty). */
export function fromJson(j: JMessage): Message {
  const entries: Entry[] = j.entries.map((e) => ({ type: e.type, term: Number(e.term), index: Number(e.index), data: hex(e.data) }));
  const s = j.snapshot;
  const confState: ConfState = { voters: ids(s.voters), learners: ids(s.learners) };
  if (s.votersOutgoing.length > 0) confState.votersOutgoing = ids(s.votersOutgoing);
  if (s.learnersNext.length > 0) confState.learnersNext = ids(s.learnersNext);
  if (s.autoLeave) confState.autoLeave = true;
  const snapshot: Snapshot = { data: hex(s.data), metadata: { index: Number(s.index), term: Number(s.term), confState } };
  const empty =
    (s.data === null || s.data === "") && s.index === "0" && s.term === "0" && s.voters.length === 0 && s.learners.length === 0 &&
    s.votersOutgoing.length === 0 && s.learnersNext.length === 0 && !s.autoLeave;
  const m: Message = {
    type: j.type, to: BigInt(j.to), from: BigInt(j.from), term: Number(j.term), logTerm: Number(j.logTerm),
    index: Number(j.index), entries, commit: Number(j.commit), reject: j.reject, rejectHint: Number(j.rejectHint),
    context: hex(j.context),
  };
  if (!empty) m.snapshot = snapshot;
  return m;
}

/** A message with its byte fields as plain Uint8Arrays (views and Buffers compare equal then). */
export function normalize(m: Message): Message {
  const b = (u: Uint8Array): Uint8Array => Uint8Array.from(u);
  const out: Message = { ...m, context: b(m.context), entries: m.entries.map((e) => ({ ...e, data: b(e.data) })) };
  if (m.snapshot !== undefined) out.snapshot = { ...m.snapshot, data: b(m.snapshot.data) };
  return out;
}
