/**
 * The crash test's judge: given what the writers were told (acknowledgements), what they asked
 * for (attempts), the event history read back from the restarted member and its current state,
 * list every violation. Pure; the test prints the violations and fails if there are any.
 */

/** A write the server acknowledged, with the revision from its response header. */
export interface Ack {
  key: string;
  /** The value put, or "" for a delete. */
  value: string;
  type: "PUT" | "DELETE";
  revision: number;
  /** Each writer issues its writes one after another. */
  writer: number;
}

/** One event of the history (watch from revision 1). */
export interface HistoryEvent {
  key: string;
  value: string;
  type: "PUT" | "DELETE";
  revision: number;
}

/** What a writer asked for, acknowledged or not: "<key>=<value>" or "<key> deleted". */
export function attemptId(type: "PUT" | "DELETE", key: string, value: string): string {
  return type === "DELETE" ? `${key} deleted` : `${key}=${value}`;
}

export interface CheckInput {
  acks: readonly Ack[];
  attempted: ReadonlySet<string>;
  /** Events with revision <= head, in the order the server sent them. */
  history: readonly HistoryEvent[];
  /** The restarted member's current revision. */
  head: number;
  /** The current key-values under the tested prefix. */
  state: ReadonlyArray<{ key: string; value: string; modRevision: number }>;
  /** First revision that belongs to the workload (2 on a fresh member). */
  firstRevision?: number;
}

/**
 * Returns the violations (empty when all is well), at most `limit` of them:
 *  - a revision acknowledged twice, or not increasing within one writer;
 *  - head below the highest acknowledged revision;
 *  - a revision missing from or repeated in the history, or an event nobody asked for;
 *  - an acknowledged write missing from the history or different there;
 *  - a current key-value that is not the last event of its key (or a key that should exist).
 */
export function checkHistory(input: CheckInput, limit = 20): string[] {
  const problems: string[] = [];
  const report = (p: string): boolean => {
    problems.push(p);
    return problems.length >= limit;
  };
  const first = input.firstRevision ?? 2;

  const byRevision = new Map<number, Ack>();
  const lastByWriter = new Map<number, number>();
  let maxAcked = 0;
  for (const a of input.acks) {
    const prev = byRevision.get(a.revision);
    if (prev && report(`revision ${a.revision} acknowledged twice: ${JSON.stringify(prev)} and ${JSON.stringify(a)}`)) return problems;
    byRevision.set(a.revision, a);
    const last = lastByWriter.get(a.writer) ?? 0;
    if (a.revision <= last && report(`writer ${a.writer}: acknowledged revision ${a.revision} after ${last}`)) return problems;
    lastByWriter.set(a.writer, a.revision);
    maxAcked = Math.max(maxAcked, a.revision);
  }
  if (input.head < maxAcked && report(`head revision ${input.head} is below the highest acknowledged revision ${maxAcked}`)) return problems;

  const seen = new Map<number, HistoryEvent>();
  for (const e of input.history) {
    if (seen.has(e.revision) && report(`revision ${e.revision} appears twice in the history`)) return problems;
    seen.set(e.revision, e);
    const id = attemptId(e.type, e.key, e.value);
    if (!input.attempted.has(id) && report(`revision ${e.revision}: ${id} was never requested`)) return problems;
  }
  for (let r = first; r <= input.head; r++) {
    if (!seen.has(r) && report(`revision ${r} is missing from the history (head ${input.head})`)) return problems;
  }
  for (const a of input.acks) {
    const e = seen.get(a.revision);
    if (!e) {
      if (report(`acknowledged ${attemptId(a.type, a.key, a.value)} at revision ${a.revision} is lost`)) return problems;
      continue;
    }
    if ((e.key !== a.key || e.value !== a.value || e.type !== a.type) &&
      report(`revision ${a.revision}: acknowledged ${attemptId(a.type, a.key, a.value)}, history has ${attemptId(e.type, e.key, e.value)}`)) {
      return problems;
    }
  }

  const latest = new Map<string, HistoryEvent>();
  for (const e of [...input.history].sort((x, y) => x.revision - y.revision)) {
    if (e.type === "DELETE") latest.delete(e.key);
    else latest.set(e.key, e);
  }
  const stateKeys = new Set<string>();
  for (const kv of input.state) {
    stateKeys.add(kv.key);
    const e = latest.get(kv.key);
    if (!e) {
      if (report(`current state has ${kv.key}=${kv.value} (rev ${kv.modRevision}) but its history ends deleted or empty`)) return problems;
    } else if ((e.value !== kv.value || e.revision !== kv.modRevision) &&
      report(`current ${kv.key}=${kv.value} at rev ${kv.modRevision}, history ends with ${e.value} at rev ${e.revision}`)) {
      return problems;
    }
  }
  for (const [key, e] of latest) {
    if (!stateKeys.has(key) && report(`${key} missing from the current state (last put ${e.value} at rev ${e.revision})`)) return problems;
  }
  return problems;
}
