/**
 * The sequential specification of etcd's key-value API, as the simulation's clients use it, for
 * the linearizability checker: per key, the value and the revision that last changed it.
 *
 * Operations (all on one key, so the history is checked per key; what crosses keys, the global
 * revision order, is checked by `checkRevisionOrder`):
 *   put(key, value)               → the revision of the write
 *   get(key)                      → the value and its mod revision (null: absent), linearizable
 *   delete(key)                   → how many keys were deleted (0 or 1) and the revision
 *   cas(key, expected, value)     → a txn: if value(key) == expected (null: key absent) then put,
 *                                   else read; answers whether it succeeded, the revision of the
 *                                   write, or what it read
 * Every value is unique in a run (client and sequence number), so an acknowledged or observed
 * value identifies its write.
 *
 * A write whose outcome is unknown (its client gave up, its member crashed) may have taken effect
 * at any point after its call, or never. When the store's history shows its value, the sim fills
 * in its outcome from there before checking; when not, it stays open and its revision is unknown
 * (-1), which later comparisons accept.
 */
import type { Model, Operation } from "./linearizability.js";
import type { RevisionHistory } from "./watch-check.js";

export type EtcdInput =
  | { kind: "put"; key: string; value: string }
  | { kind: "get"; key: string }
  | { kind: "delete"; key: string }
  | { kind: "cas"; key: string; expected: string | null; value: string };

export type EtcdOutput =
  | { kind: "put"; revision: number }
  | { kind: "get"; value: string | null; modRevision: number; revision: number }
  | { kind: "delete"; deleted: number; revision: number }
  | { kind: "cas"; succeeded: boolean; revision: number; value: string | null; modRevision: number };

export type EtcdOperation = Operation<EtcdInput, EtcdOutput>;

/** One key's state: its value (null: absent) and the revision that set it (-1: unknown). */
export interface KeyState {
  value: string | null;
  modRevision: number;
}

const ABSENT: KeyState = { value: null, modRevision: 0 };

/** A revision the model cannot know (a write whose outcome is unknown) matches any. */
function sameRevision(known: number, observed: number): boolean {
  return known < 0 || known === observed;
}

function laterRevision(known: number, observed: number): boolean {
  return known < 0 || observed > known;
}

function written(value: string, output: { revision: number } | undefined): KeyState {
  return { value, modRevision: output === undefined ? -1 : output.revision };
}

export const etcdModel: Model<KeyState, EtcdInput, EtcdOutput> = {
  init: () => ABSENT,
  step(state, input, output) {
    switch (input.kind) {
      case "put":
        if (output === undefined) return written(input.value, undefined);
        if (output.kind !== "put" || !laterRevision(state.modRevision, output.revision)) return undefined;
        return written(input.value, output);
      case "get":
        if (output === undefined) return state;
        if (output.kind !== "get" || output.value !== state.value) return undefined;
        if (state.value !== null && !sameRevision(state.modRevision, output.modRevision)) return undefined;
        return state;
      case "delete": {
        const present = state.value !== null;
        if (output === undefined) return present ? { value: null, modRevision: -1 } : state;
        if (output.kind !== "delete" || output.deleted !== (present ? 1 : 0)) return undefined;
        if (!present) return state;
        if (!laterRevision(state.modRevision, output.revision)) return undefined;
        return { value: null, modRevision: output.revision };
      }
      case "cas": {
        const matches = state.value === input.expected;
        if (output === undefined) return matches ? written(input.value, undefined) : state;
        if (output.kind !== "cas" || output.succeeded !== matches) return undefined;
        if (matches) return laterRevision(state.modRevision, output.revision) ? written(input.value, output) : undefined;
        if (output.value !== state.value) return undefined;
        if (state.value !== null && !sameRevision(state.modRevision, output.modRevision)) return undefined;
        return state;
      }
    }
  },
  stateKey: (s) => (s.value === null ? `∅@${s.modRevision}` : `${s.value}@${s.modRevision}`),
  partition(ops) {
    const byKey = new Map<string, EtcdOperation[]>();
    for (const op of ops) {
      let list = byKey.get(op.input.key);
      if (!list) byKey.set(op.input.key, (list = []));
      list.push(op);
    }
    return [...byKey.keys()].sort().map((k) => byKey.get(k)!);
  },
  describe: (op) => `c${op.clientId} [${op.call}, ${op.ret === Infinity ? "∞" : op.ret}] ${describeInput(op.input)} -> ${describeOutput(op.output)}`,
};

export function describeInput(input: EtcdInput): string {
  switch (input.kind) {
    case "put":
      return `put(${input.key}=${input.value})`;
    case "get":
      return `get(${input.key})`;
    case "delete":
      return `delete(${input.key})`;
    case "cas":
      return `cas(${input.key}: ${input.expected ?? "∅"} -> ${input.value})`;
  }
}

export function describeOutput(output: EtcdOutput | undefined): string {
  if (output === undefined) return "?";
  switch (output.kind) {
    case "put":
      return `ok@${output.revision}`;
    case "get":
      return `${output.value ?? "∅"}@${output.modRevision} (rev ${output.revision})`;
    case "delete":
      return `deleted ${output.deleted}@${output.revision}`;
    case "cas":
      return output.succeeded ? `ok@${output.revision}` : `failed, read ${output.value ?? "∅"}@${output.modRevision}`;
  }
}

/** The revision an acknowledged write took effect at, if it wrote. */
function writeRevision(op: EtcdOperation): number | undefined {
  const o = op.output;
  if (o === undefined) return undefined;
  if (o.kind === "put") return o.revision;
  if (o.kind === "delete" && o.deleted > 0) return o.revision;
  if (o.kind === "cas" && o.succeeded) return o.revision;
  return undefined;
}

/**
 * What per-key checking cannot see: the store's revisions order all writes, across keys.
 * - two acknowledged writes never share a revision (each op here writes one key);
 * - a write acknowledged before another is called has the lower revision;
 * - every answer (a linearizable read's too) is at a revision no lower than every write
 *   acknowledged before it was called.
 * @returns a description of the first violation, or undefined.
 */
export function checkRevisionOrder(ops: EtcdOperation[]): string | undefined {
  const writes = ops.filter((o) => writeRevision(o) !== undefined).sort((a, b) => a.ret - b.ret);
  const byRevision = new Map<number, EtcdOperation>();
  for (const w of writes) {
    const rev = writeRevision(w)!;
    const other = byRevision.get(rev);
    if (other !== undefined) return `two writes at revision ${rev}: ${etcdModel.describe!(other)} and ${etcdModel.describe!(w)}`;
    byRevision.set(rev, w);
  }
  // Sweep in call order, keeping the highest revision acknowledged so far.
  const byCall = ops.filter((o) => o.output !== undefined).sort((a, b) => a.call - b.call);
  let acked = 0;
  let ackedBy: EtcdOperation | undefined;
  let wi = 0;
  for (const op of byCall) {
    while (wi < writes.length && writes[wi]!.ret < op.call) {
      const rev = writeRevision(writes[wi]!)!;
      if (rev > acked) {
        acked = rev;
        ackedBy = writes[wi];
      }
      wi++;
    }
    const rev = op.output!.revision;
    if (rev < acked) {
      return `${etcdModel.describe!(op)} answers at revision ${rev}, below ${acked} acknowledged before its call by ${etcdModel.describe!(ackedBy!)}`;
    }
  }
  return undefined;
}

/** What an answer read: the key's value and mod revision at the answer's revision, if it read. */
function readOf(op: EtcdOperation): { value: string | null; modRevision: number; revision: number } | undefined {
  const o = op.output;
  if (o === undefined) return undefined;
  if (o.kind === "get") return o;
  if (o.kind === "cas" && !o.succeeded) return o;
  if (o.kind === "delete" && o.deleted === 0) return { value: null, modRevision: 0, revision: o.revision };
  return undefined;
}

/**
 * Linearizability decided through the store's revisions, for a history in which every write that
 * took effect has its revision (no open writes): the revisions order the writes, and every read
 * sits at the revision it answered at. The order is a linearization exactly when
 * - it respects real time among writes (checkRevisionOrder);
 * - a read shows its key as the writes left it at its revision;
 * - a read's revision is at least that of every write acknowledged before the read was called
 *   (checkRevisionOrder), and every write at or below it was called before the read returned;
 * - reads one after the other in real time never go back in revision.
 * @returns a description of the first violation, or undefined.
 */
export function checkRevisionLinearization(ops: EtcdOperation[]): string | undefined {
  const order = checkRevisionOrder(ops);
  if (order) return order;
  const writesByKey = new Map<string, { revision: number; value: string | null; op: EtcdOperation }[]>();
  const writes: { revision: number; op: EtcdOperation }[] = [];
  for (const op of ops) {
    const rev = writeRevision(op);
    if (rev === undefined) continue;
    const inp = op.input;
    const value = inp.kind === "put" || inp.kind === "cas" ? inp.value : null;
    let list = writesByKey.get(inp.key);
    if (!list) writesByKey.set(inp.key, (list = []));
    list.push({ revision: rev, value, op });
    writes.push({ revision: rev, op });
  }
  for (const list of writesByKey.values()) list.sort((a, b) => a.revision - b.revision);
  writes.sort((a, b) => a.revision - b.revision);
  const reads = ops.filter((op) => readOf(op) !== undefined);
  for (const op of reads) {
    const r = readOf(op)!;
    let last: { revision: number; value: string | null; op: EtcdOperation } | undefined;
    for (const w of writesByKey.get(op.input.key) ?? []) if (w.revision <= r.revision) last = w;
    const value = last?.value ?? null;
    const modRevision = value === null ? 0 : last!.revision;
    if (r.value !== value || (value !== null && r.modRevision !== modRevision)) {
      return `${etcdModel.describe!(op)}: at revision ${r.revision} the key was ${value ?? "∅"}@${modRevision}${last ? ` (${etcdModel.describe!(last.op)})` : ""}`;
    }
    const future = writes.find((w) => w.revision <= r.revision && w.op.call > op.ret);
    if (future) return `${etcdModel.describe!(op)} answers at revision ${r.revision}, which includes ${etcdModel.describe!(future.op)}, called after it returned`;
  }
  const byCall = [...reads].sort((a, b) => a.call - b.call);
  const byRet = [...reads].sort((a, b) => a.ret - b.ret);
  let highest = 0;
  let highestBy: EtcdOperation | undefined;
  let ri = 0;
  for (const op of byCall) {
    while (ri < byRet.length && byRet[ri]!.ret < op.call) {
      const rev = readOf(byRet[ri]!)!.revision;
      if (rev > highest) {
        highest = rev;
        highestBy = byRet[ri];
      }
      ri++;
    }
    if (readOf(op)!.revision < highest) {
      return `${etcdModel.describe!(op)} reads at revision ${readOf(op)!.revision}, after ${etcdModel.describe!(highestBy!)} had read at ${highest}`;
    }
  }
  return undefined;
}

/** The write an acknowledged operation made (none for reads, failed CAS, empty deletes). */
export function ackedWrites(op: EtcdOperation): { key: string; value: string | null; revision: number; what: string }[] {
  const o = op.output;
  if (o === undefined) return [];
  const what = etcdModel.describe!(op);
  if (o.kind === "put" && op.input.kind === "put") return [{ key: op.input.key, value: op.input.value, revision: o.revision, what }];
  if (o.kind === "cas" && o.succeeded && op.input.kind === "cas") return [{ key: op.input.key, value: op.input.value, revision: o.revision, what }];
  if (o.kind === "delete" && o.deleted > 0) return [{ key: op.input.key, value: null, revision: o.revision, what }];
  return [];
}

/**
 * Fills in the outcome of writes whose client never learned it, from the watched history: a put
 * or compare-and-set whose (unique) value shows up took effect at that revision. When the history
 * is complete (every revision up to `lastRevision` was seen), one whose value never shows up
 * never took effect, and leaves the history (a compare-and-set that did not write changes
 * nothing either); and a key's unknown deletes explain the deletions of it that no acknowledged
 * delete made (matchUnknownDeletes): those matched took effect there, the others deleted nothing
 * if they ran at all, and leave the history. Deletes that cannot be matched stay open.
 */
export function resolveUnknownWrites(history: EtcdOperation[], revisions: RevisionHistory, lastRevision: number): EtcdOperation[] {
  const written = new Map<string, number>();
  for (const [rev, events] of revisions) for (const e of events) if (e.type === "PUT") written.set(`${e.key}\u0000${e.value}`, rev);
  let complete = true;
  for (let rev = 2; rev <= lastRevision && complete; rev++) complete = revisions.has(rev);
  const deletes = complete ? matchUnknownDeletes(history, revisions) : new Map<EtcdOperation, number | null>();
  const kept: EtcdOperation[] = [];
  for (const op of history) {
    const inp = op.input;
    if (op.output === undefined && inp.kind === "delete") {
      const rev = deletes.get(op);
      if (rev === null) continue;
      if (rev !== undefined) op.output = { kind: "delete", deleted: 1, revision: rev };
    }
    if (op.output === undefined && (inp.kind === "put" || inp.kind === "cas")) {
      const rev = written.get(`${inp.key}\u0000${inp.value}`);
      if (rev !== undefined) {
        op.output = inp.kind === "put" ? { kind: "put", revision: rev } : { kind: "cas", succeeded: true, revision: rev, value: null, modRevision: 0 };
      } else if (complete) {
        continue;
      }
    }
    kept.push(op);
  }
  return kept;
}

/**
 * For a complete watched history: which unknown deletes made the deletions that no acknowledged
 * delete made. Each such deletion (of key K at revision r) needs its own unknown delete of K that
 * could have run at r: one called after every operation that had returned at a revision of r or
 * more (a delete called later cannot have happened before what was already answered). Deletions
 * are taken in revision order and each given any unknown delete eligible by then (eligibility only
 * grows with r, so any choice leaves the later ones as well off). Returns, for the deletes of each
 * key where that succeeds, the revision each took effect at, or null for those left over (they
 * found nothing to delete, if they ran at all); keys where it fails are left out (their deletes
 * stay open).
 */
function matchUnknownDeletes(history: EtcdOperation[], revisions: RevisionHistory): Map<EtcdOperation, number | null> {
  const acked = new Set<string>();
  for (const op of history) {
    if (op.output?.kind === "delete" && op.output.deleted > 0) acked.add(`${op.input.key}@${op.output.revision}`);
  }
  const unmatched = new Map<string, number[]>();
  for (const [rev, events] of revisions) {
    for (const e of events) {
      if (e.type !== "DELETE" || acked.has(`${e.key}@${rev}`)) continue;
      let list = unmatched.get(e.key);
      if (!list) unmatched.set(e.key, (list = []));
      list.push(rev);
    }
  }
  // Highest revision answered by every time: answered operations sorted by when they returned.
  const answered = history
    .map((op) => ({ ret: op.ret, rev: writeRevision(op) ?? readOf(op)?.revision }))
    .filter((a): a is { ret: number; rev: number } => a.rev !== undefined && Number.isFinite(a.ret))
    .sort((a, b) => a.ret - b.ret);
  const floor = (call: number): number => {
    let high = 0;
    for (const a of answered) {
      if (a.ret >= call) break;
      high = Math.max(high, a.rev);
    }
    return high;
  };
  const unknown = new Map<string, { op: EtcdOperation; floor: number }[]>();
  for (const op of history) {
    if (op.output !== undefined || op.input.kind !== "delete") continue;
    let list = unknown.get(op.input.key);
    if (!list) unknown.set(op.input.key, (list = []));
    list.push({ op, floor: floor(op.call) });
  }
  const out = new Map<EtcdOperation, number | null>();
  for (const [key, ops] of unknown) {
    const revs = (unmatched.get(key) ?? []).sort((a, b) => a - b);
    ops.sort((a, b) => a.floor - b.floor);
    const assigned = new Map<EtcdOperation, number | null>();
    let next = 0;
    let ok = true;
    for (const rev of revs) {
      const d = ops[next];
      if (d === undefined || d.floor >= rev) {
        ok = false;
        break;
      }
      assigned.set(d.op, rev);
      next++;
    }
    if (!ok) continue;
    for (; next < ops.length; next++) assigned.set(ops[next]!.op, null);
    for (const [op, rev] of assigned) out.set(op, rev);
  }
  return out;
}
