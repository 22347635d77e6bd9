/**
 * The simulated key-value service: its operations, the deterministic state machine that members
 * run on committed entries, and the sequential specification the linearizability checker uses.
 *
 * Values are strings; a missing key reads as null. Commands carry a client request id; a member
 * applies each request id at most once (a duplicated proposal is skipped and answered from the
 * remembered result), as etcd's server would.
 */
import type { Model, Operation } from "./linearizability.js";

export type KvInput =
  | { kind: "put"; key: string; value: string }
  | { kind: "get"; key: string }
  | { kind: "cas"; key: string; expected: string | null; value: string };

export type KvOutput =
  | { kind: "put" }
  | { kind: "get"; value: string | null }
  | { kind: "cas"; ok: boolean };

/** A write as proposed through raft. Reads never enter the log (they use ReadIndex). */
export interface KvCommand {
  requestId: string;
  input: Extract<KvInput, { kind: "put" } | { kind: "cas" }>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(cmd: KvCommand): Uint8Array {
  return encoder.encode(JSON.stringify(cmd));
}

export function decodeCommand(data: Uint8Array): KvCommand {
  return JSON.parse(decoder.decode(data)) as KvCommand;
}

export function describeInput(input: KvInput): string {
  switch (input.kind) {
    case "put":
      return `put(${input.key}=${input.value})`;
    case "get":
      return `get(${input.key})`;
    case "cas":
      return `cas(${input.key}: ${input.expected ?? "∅"} -> ${input.value})`;
  }
}

export function describeOutput(output: KvOutput | undefined): string {
  if (output === undefined) return "?";
  switch (output.kind) {
    case "put":
      return "ok";
    case "get":
      return output.value ?? "∅";
    case "cas":
      return output.ok ? "ok" : "failed";
  }
}

/** The replicated state machine of one member. */
export class KvStateMachine {
  private data = new Map<string, string>();
  /** requestId -> result, so that a request applied twice takes effect once. */
  private results = new Map<string, KvOutput>();

  /** Applies a command; returns its result (the remembered one for a repeated request id). */
  apply(cmd: KvCommand): KvOutput {
    const seen = this.results.get(cmd.requestId);
    if (seen !== undefined) return seen;
    const out = this.execute(cmd.input);
    this.results.set(cmd.requestId, out);
    return out;
  }

  /** Test hook: overwrites a key without going through the log (used to prove checks fire). */
  corrupt(key: string, value: string): void {
    this.data.set(key, value);
  }

  resultOf(requestId: string): KvOutput | undefined {
    return this.results.get(requestId);
  }

  get(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  private execute(input: KvCommand["input"]): KvOutput {
    if (input.kind === "put") {
      this.data.set(input.key, input.value);
      return { kind: "put" };
    }
    const current = this.data.get(input.key) ?? null;
    if (current !== input.expected) return { kind: "cas", ok: false };
    this.data.set(input.key, input.value);
    return { kind: "cas", ok: true };
  }

  /** A canonical image of the whole state (data and request results). */
  snapshot(): Uint8Array {
    const data = [...this.data.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const results = [...this.results.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return encoder.encode(JSON.stringify({ data, results }));
  }

  restore(image: Uint8Array): void {
    if (image.length === 0) {
      this.data = new Map();
      this.results = new Map();
      return;
    }
    const parsed = JSON.parse(decoder.decode(image)) as { data: [string, string][]; results: [string, KvOutput][] };
    this.data = new Map(parsed.data);
    this.results = new Map(parsed.results);
  }

  /** A short digest of the data (not the request results), for cross-member comparison. */
  digest(): string {
    const keys = [...this.data.keys()].sort();
    let h = 0x811c9dc5;
    for (const k of keys) {
      const s = `${k}=${this.data.get(k)};`;
      for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
    }
    return `${keys.length}:${h.toString(16)}`;
  }
}

export type KvOperation = Operation<KvInput, KvOutput>;

/** Sequential specification of one key; the history is partitioned per key. */
export const kvModel: Model<string | null, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    switch (input.kind) {
      case "put":
        if (output !== undefined && output.kind !== "put") return undefined;
        return input.value;
      case "get":
        if (output === undefined) return state;
        if (output.kind !== "get" || output.value !== state) return undefined;
        return state;
      case "cas": {
        const matches = state === input.expected;
        if (output !== undefined && (output.kind !== "cas" || output.ok !== matches)) return undefined;
        return matches ? input.value : state;
      }
    }
  },
  stateKey: (state) => (state === null ? "\u0000" : "=" + state),
  partition(ops) {
    const byKey = new Map<string, KvOperation[]>();
    for (const op of ops) {
      let list = byKey.get(op.input.key);
      if (!list) byKey.set(op.input.key, (list = []));
      list.push(op);
    }
    return [...byKey.keys()].sort().map((k) => byKey.get(k)!);
  },
  describe: (op) =>
    `c${op.clientId} [${op.call}, ${op.ret === Infinity ? "∞" : op.ret}] ${describeInput(op.input)} -> ${describeOutput(op.output)}`,
};
