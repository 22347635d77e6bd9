import { describe, expect, it } from "vitest";
import { checkLinearizable, type Model, type Operation } from "./linearizability.js";
import { SimRng } from "./sim-rng.js";

/**
 * The checker's test subject: a register per key with put, get and compare-and-set (the
 * simulation itself checks etcd's richer model, etcd-model.ts).
 */
type KvInput =
  | { kind: "put"; key: string; value: string }
  | { kind: "get"; key: string }
  | { kind: "cas"; key: string; expected: string | null; value: string };

type KvOutput =
  | { kind: "put" }
  | { kind: "get"; value: string | null }
  | { kind: "cas"; ok: boolean };

type KvOperation = Operation<KvInput, KvOutput>;

function describeInput(input: KvInput): string {
  switch (input.kind) {
    case "put":
      return `put(${input.key}=${input.value})`;
    case "get":
      return `get(${input.key})`;
    case "cas":
      return `cas(${input.key}: ${input.expected ?? "∅"} -> ${input.value})`;
  }
}

function describeOutput(output: KvOutput | undefined): string {
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

/** Sequential specification of one key; the history is partitioned per key. */
const kvModel: Model<string | null, KvInput, KvOutput> = {
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

function op(clientId: number, call: number, ret: number, input: KvInput, output: KvOutput | undefined): KvOperation {
  return { clientId, call, ret, input, output };
}
const put = (key: string, value: string): KvInput => ({ kind: "put", key, value });
const get = (key: string): KvInput => ({ kind: "get", key });
const cas = (key: string, expected: string | null, value: string): KvInput => ({ kind: "cas", key, expected, value });
const ok: KvOutput = { kind: "put" };
const saw = (value: string | null): KvOutput => ({ kind: "get", value });
const casOk = (v: boolean): KvOutput => ({ kind: "cas", ok: v });

const check = (ops: KvOperation[]) => checkLinearizable(kvModel, ops).outcome;

describe("linearizability checker (hand-made histories)", () => {
  it("accepts an empty history", () => {
    expect(check([])).toBe("ok");
  });

  it("accepts a sequential history", () => {
    expect(check([op(1, 1, 2, put("a", "1"), ok), op(2, 3, 4, get("a"), saw("1"))])).toBe("ok");
  });

  it("rejects a read of a value never written", () => {
    expect(check([op(1, 1, 2, get("a"), saw("x"))])).toBe("illegal");
  });

  it("rejects a stale read after the write returned", () => {
    expect(
      check([op(1, 1, 2, put("a", "1"), ok), op(1, 3, 4, put("a", "2"), ok), op(2, 5, 6, get("a"), saw("1"))]),
    ).toBe("illegal");
  });

  it("accepts either value for a read concurrent with a write", () => {
    const base = [op(1, 1, 2, put("a", "1"), ok), op(1, 3, 8, put("a", "2"), ok)];
    expect(check([...base, op(2, 4, 6, get("a"), saw("1"))])).toBe("ok");
    expect(check([...base, op(2, 4, 6, get("a"), saw("2"))])).toBe("ok");
  });

  it("rejects a new-then-old read pair (reads must not go back in time)", () => {
    expect(
      check([
        op(1, 1, 2, put("a", "1"), ok),
        op(1, 3, 20, put("a", "2"), ok),
        op(2, 4, 5, get("a"), saw("2")),
        op(3, 6, 7, get("a"), saw("1")),
      ]),
    ).toBe("illegal");
  });

  it("lets an unknown write take effect or not", () => {
    const base = [op(1, 1, 2, put("a", "1"), ok), op(1, 3, Infinity, put("a", "2"), undefined)];
    expect(check([...base, op(2, 10, 11, get("a"), saw("2"))])).toBe("ok");
    expect(check([...base, op(2, 10, 11, get("a"), saw("1"))])).toBe("ok");
    // ... but not take effect and then be undone.
    expect(check([...base, op(2, 10, 11, get("a"), saw("2")), op(2, 12, 13, get("a"), saw("1"))])).toBe("illegal");
    // ... and never before it was invoked.
    expect(
      check([op(1, 1, 2, put("a", "1"), ok), op(2, 3, 4, get("a"), saw("2")), op(1, 5, Infinity, put("a", "2"), undefined)]),
    ).toBe("illegal");
  });

  it("rejects two concurrent compare-and-sets that both win", () => {
    expect(check([op(1, 1, 5, cas("a", null, "x"), casOk(true)), op(2, 2, 6, cas("a", null, "y"), casOk(true))])).toBe(
      "illegal",
    );
    expect(check([op(1, 1, 5, cas("a", null, "x"), casOk(true)), op(2, 2, 6, cas("a", null, "y"), casOk(false))])).toBe(
      "ok",
    );
  });

  it("rejects a failed compare-and-set whose expectation held throughout", () => {
    expect(check([op(1, 1, 2, put("a", "1"), ok), op(2, 3, 4, cas("a", "1", "2"), casOk(false))])).toBe("illegal");
  });

  it("decides an unknown compare-and-set from the state", () => {
    expect(
      check([
        op(1, 1, 2, put("a", "1"), ok),
        op(2, 3, Infinity, cas("a", "1", "2"), undefined),
        op(3, 5, 6, get("a"), saw("2")),
      ]),
    ).toBe("ok");
    expect(
      check([
        op(1, 1, 2, put("a", "3"), ok),
        op(2, 3, Infinity, cas("a", "1", "2"), undefined),
        op(3, 5, 6, get("a"), saw("2")),
      ]),
    ).toBe("illegal");
  });

  it("checks keys independently", () => {
    const r = checkLinearizable(kvModel, [
      op(1, 1, 2, put("a", "1"), ok),
      op(1, 3, 4, put("b", "1"), ok),
      op(2, 5, 6, get("a"), saw("1")),
      op(2, 7, 8, get("b"), saw(null)),
    ]);
    expect(r.outcome).toBe("illegal");
    expect(r.failed?.ops.every((o) => o.input.key === "b")).toBe(true);
    expect(r.failed?.longestPrefix.length).toBe(1);
  });

  it("reports a timeout when the step bound is exceeded", () => {
    const ops: KvOperation[] = [];
    for (let i = 0; i < 20; i++) ops.push(op(i, i, 100 + i, put("a", String(i)), ok));
    ops.push(op(99, 200, 201, get("a"), saw("nope")));
    expect(checkLinearizable(kvModel, ops, { maxStepsPerPartition: 50 }).outcome).toBe("timeout");
  });
});

/**
 * Random histories from a real register: each operation takes effect at a point inside its
 * interval, so the history is linearizable by construction; corrupting one read makes it not.
 */
describe("linearizability checker (generated histories)", () => {
  const baseSeed = Number(process.env["SEED"] ?? 1);
  const runs = Number(process.env["RUNS"] ?? 200);

  function generate(rng: SimRng): KvOperation[] {
    const count = rng.between(5, 40);
    const timeline: { at: number; input: KvInput; call: number; ret: number; clientId: number; unknown: boolean }[] = [];
    let valueSeq = 0;
    for (let i = 0; i < count; i++) {
      const call = rng.nextInt(1000) * 4;
      const at = call + 1 + rng.nextInt(40) * 4; // linearization point strictly inside
      const ret = at + 1 + rng.nextInt(40) * 4;
      const key = rng.pick(["a", "b"]);
      const r = rng.nextInt(3);
      const input: KvInput =
        r === 0
          ? put(key, `v${++valueSeq}`)
          : r === 1
            ? get(key)
            : cas(key, rng.chance(0.5) ? null : `v${rng.between(1, Math.max(1, valueSeq))}`, `v${++valueSeq}`);
      timeline.push({ at, input, call, ret, clientId: i, unknown: input.kind !== "get" && rng.chance(0.15) });
    }
    // Make all times distinct: calls at 4k, points at 4k+1, returns at 4k+2 after sorting ties.
    timeline.sort((x, y) => x.at - y.at);
    const state = new Map<string, string | null>();
    const ops: KvOperation[] = [];
    const used = new Set<number>();
    const uniq = (t: number): number => {
      while (used.has(t)) t += 0.001;
      used.add(t);
      return t;
    };
    for (const t of timeline) {
      const cur = state.get(t.input.key) ?? null;
      let output: KvOutput;
      if (t.input.kind === "put") {
        state.set(t.input.key, t.input.value);
        output = ok;
      } else if (t.input.kind === "get") {
        output = saw(cur);
      } else {
        const win = cur === t.input.expected;
        if (win) state.set(t.input.key, t.input.value);
        output = casOk(win);
      }
      ops.push({
        clientId: t.clientId,
        input: t.input,
        call: uniq(t.call),
        ret: t.unknown ? Infinity : uniq(t.ret + 2),
        output: t.unknown ? undefined : output,
      });
    }
    return ops;
  }

  it(`accepts ${runs} linearizable histories and rejects their corrupted reads`, () => {
    let rejected = 0;
    for (let i = 0; i < runs; i++) {
      const seed = baseSeed + i;
      const rng = new SimRng(seed);
      const ops = generate(rng);
      const r = checkLinearizable(kvModel, ops);
      if (r.outcome !== "ok") throw new Error(`seed=${seed}: a linearizable history was judged ${r.outcome}`);
      const reads = ops.filter((o) => o.input.kind === "get");
      if (reads.length === 0) continue;
      const victim = rng.pick(reads);
      const corrupted = ops.map((o) => (o === victim ? { ...o, output: saw("never-written") } : o));
      const r2 = checkLinearizable(kvModel, corrupted);
      if (r2.outcome !== "illegal") throw new Error(`seed=${seed}: a corrupted history was judged ${r2.outcome}`);
      rejected++;
    }
    expect(rejected).toBeGreaterThan(runs / 2);
  });
});
