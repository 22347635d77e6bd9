/**
 * A linearizability checker for histories of concurrent operations, in the style of porcupine:
 * Wing & Gong's search with Lowe's just-in-time linearization and a memo of the
 * (linearized-set, model-state) pairs already explored, run separately on each partition of the
 * history (for a key-value store: one partition per key).
 *
 * An operation has a call time and a return time; `call < ret` and all times of one history are
 * distinct (the simulation uses a global event sequence). An operation whose outcome is unknown
 * (the client timed out or its member crashed) has `ret = Infinity` and `output = undefined`:
 * it may have taken effect at any point after its call, or never (taking effect after every other
 * operation is indistinguishable from never).
 */

export interface Operation<I, O> {
  /** Who issued it; informational only (ops need not be sequential per client). */
  clientId: number;
  input: I;
  /** undefined = the outcome is unknown; the model accepts any output. */
  output: O | undefined;
  call: number;
  /** Infinity when the outcome is unknown. */
  ret: number;
}

export interface Model<S, I, O> {
  init(): S;
  /**
   * The state after applying `input` to `state` if the operation may return `output`
   * (any output when `output` is undefined), or undefined if it may not.
   */
  step(state: S, input: I, output: O | undefined): S | undefined;
  /** A string that identifies the state, for the memo. Equal states must give equal keys. */
  stateKey(state: S): string;
  /** Splits a history into independent parts (e.g. per key). Default: one part. */
  partition?(ops: Operation<I, O>[]): Operation<I, O>[][];
  describe?(op: Operation<I, O>): string;
}

export type CheckOutcome = "ok" | "illegal" | "timeout";

export interface PartitionResult<I, O> {
  outcome: CheckOutcome;
  ops: Operation<I, O>[];
  /** For an illegal partition: the longest sequence of ops that could be linearized, in order. */
  longestPrefix: Operation<I, O>[];
}

export interface CheckResult<I, O> {
  outcome: CheckOutcome;
  /** Search steps used, over all partitions. */
  steps: number;
  /** The first partition that is not linearizable (or timed out), if any. */
  failed?: PartitionResult<I, O>;
}

export interface CheckOptions {
  /** Bound on search steps per partition; exceeding it gives outcome "timeout". */
  maxStepsPerPartition?: number;
}

interface ListEntry {
  /** Index of the operation in the partition. */
  id: number;
  isCall: boolean;
  /** For a call: its return entry. */
  match: ListEntry | undefined;
  prev: ListEntry | undefined;
  next: ListEntry | undefined;
  time: number;
}

export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult<I, O> {
  const parts = model.partition ? model.partition(history) : [history];
  const maxSteps = options.maxStepsPerPartition ?? 2_000_000;
  let steps = 0;
  let timedOut: PartitionResult<I, O> | undefined;
  for (const part of parts) {
    const r = checkPartition(model, part, maxSteps);
    steps += r.steps;
    if (r.result.outcome === "illegal") return { outcome: "illegal", steps, failed: r.result };
    if (r.result.outcome === "timeout" && timedOut === undefined) timedOut = r.result;
  }
  if (timedOut) return { outcome: "timeout", steps, failed: timedOut };
  return { outcome: "ok", steps };
}

function checkPartition<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  maxSteps: number,
): { result: PartitionResult<I, O>; steps: number } {
  const n = ops.length;
  if (n === 0) return { result: { outcome: "ok", ops, longestPrefix: [] }, steps: 0 };
  for (const op of ops) {
    if (!(op.call < op.ret)) throw new RangeError(`operation returns before it is called: ${op.call} >= ${op.ret}`);
  }

  // Build the time-ordered, doubly linked list of call and return events behind a sentinel head.
  const events: ListEntry[] = [];
  for (let id = 0; id < n; id++) {
    const op = ops[id]!;
    const ret: ListEntry = { id, isCall: false, match: undefined, prev: undefined, next: undefined, time: op.ret };
    const call: ListEntry = { id, isCall: true, match: ret, prev: undefined, next: undefined, time: op.call };
    events.push(call, ret);
  }
  // Calls before returns at equal times (only Infinity returns can tie), then by id for stability.
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.id - b.id : a.isCall ? -1 : 1) || 0);
  const head: ListEntry = { id: -1, isCall: false, match: undefined, prev: undefined, next: undefined, time: -Infinity };
  let prev = head;
  for (const e of events) {
    prev.next = e;
    e.prev = prev;
    prev = e;
  }

  const lift = (call: ListEntry): void => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match!;
    ret.prev!.next = ret.next;
    if (ret.next) ret.next.prev = ret.prev;
  };
  const unlift = (call: ListEntry): void => {
    const ret = call.match!;
    ret.prev!.next = ret;
    if (ret.next) ret.next.prev = ret;
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  const words = Math.ceil(n / 32);
  const linearized = new Uint32Array(words);
  const memo = new Set<string>();
  const memoKey = (stateKey: string): string => {
    let s = stateKey + "|";
    for (let i = 0; i < words; i++) s += linearized[i]!.toString(36) + ",";
    return s;
  };

  const stack: { call: ListEntry; state: S }[] = [];
  let longest: number[] = [];
  let state = model.init();
  let entry: ListEntry | undefined = head.next;
  let steps = 0;

  while (head.next !== undefined) {
    if (++steps > maxSteps) {
      return { result: { outcome: "timeout", ops, longestPrefix: longest.map((i) => ops[i]!) }, steps };
    }
    if (entry === undefined) throw new Error("linearizability search ran off the event list");
    if (entry.isCall) {
      const op = ops[entry.id]!;
      const next = model.step(state, op.input, op.output);
      if (next !== undefined) {
        const bit = entry.id;
        linearized[bit >>> 5]! |= 1 << (bit & 31);
        const key = memoKey(model.stateKey(next));
        if (!memo.has(key)) {
          memo.add(key);
          stack.push({ call: entry, state });
          if (stack.length > longest.length) longest = stack.map((f) => f.call.id);
          state = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[bit >>> 5]! &= ~(1 << (bit & 31));
      }
      entry = entry.next;
    } else {
      // A return was reached whose call is not linearized: backtrack.
      const frame = stack.pop();
      if (frame === undefined) {
        return { result: { outcome: "illegal", ops, longestPrefix: longest.map((i) => ops[i]!) }, steps };
      }
      state = frame.state;
      const bit = frame.call.id;
      linearized[bit >>> 5]! &= ~(1 << (bit & 31));
      unlift(frame.call);
      entry = frame.call.next;
    }
  }
  return { result: { outcome: "ok", ops, longestPrefix: [] }, steps };
}
