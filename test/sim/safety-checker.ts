/**
 * Raft's safety properties (Raft paper, figure 3), checked as the simulation runs:
 *
 *  - election safety: at most one leader per term;
 *  - log matching: two logs holding an entry with the same index and term hold the same entry and
 *    agree on everything before it (checked inductively: same (index, term) => same payload and
 *    same term at index-1);
 *  - leader completeness: an entry committed in term t is in the log of every leader of a term
 *    after t (checked when a member becomes leader);
 *  - state machine safety: no two members apply different entries at one index, and the state
 *    machines agree after applying the same index;
 *  - committed entries never change: once index i is known committed with term t, every member
 *    that later reports i committed has term t there;
 *  - one vote per term, durably: a member never reports two different votes in one term, and
 *    its term never goes back (not even across a crash: both are synced before they are used);
 *  - leaders only append: a leader never truncates or rewrites its own log.
 *
 * Every check throws a Violation naming the property.
 */
import { EntryType, type Entry, type NodeId } from "../../server/src/raft/types.js";
import type { MemoryStorage } from "../../server/src/raft/storage.js";

export class Violation extends Error {
  override name = "Violation";
  constructor(
    readonly invariant: string,
    readonly detail: string,
  ) {
    super(`${invariant}: ${detail}`);
  }
}

export function entryFingerprint(e: Entry): string {
  let h = 0x811c9dc5;
  const d = e.data;
  for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i]!, 0x01000193) >>> 0;
  return `${e.type === EntryType.ConfChange ? "cc" : "n"}:${d.length}:${h.toString(16)}`;
}

interface CommittedEntry {
  term: number;
  /** Lowest term in which any member reported the index committed (the leader's term that committed it). */
  commitTerm: number;
}

interface AppliedEntry {
  term: number;
  fingerprint: string;
  /** State machine digest right after applying this index. */
  digest: string;
  by: NodeId;
}

/** Read access to one member's log after it persisted a Ready. */
export interface LogView {
  /** Term at `index`, or undefined when it is compacted (at or below the snapshot) or absent. */
  termAt(index: number): number | undefined;
  /** The snapshot index: entries at or below it are covered by the snapshot. */
  snapshotIndex(): number;
  lastIndex(): number;
}

/** The checker's view of a member's in-memory raft log. */
export function logView(storage: MemoryStorage): LogView {
  return {
    termAt(index: number): number | undefined {
      if (index < storage.firstIndex() - 1 || index > storage.lastIndex()) return undefined;
      return storage.term(index);
    },
    snapshotIndex: () => storage.firstIndex() - 1,
    lastIndex: () => storage.lastIndex(),
  };
}

export class SafetyChecker {
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** "index:term" -> fingerprint and previous term. */
  private readonly entries = new Map<string, { fingerprint: string; prevTerm: number | undefined }>();
  private readonly committed = new Map<number, CommittedEntry>();
  private maxCommitted = 0;
  private readonly applied = new Map<number, AppliedEntry>();
  /** "member:term" -> the vote the member reported in that term. */
  private readonly votes = new Map<string, NodeId>();
  private readonly maxTerm = new Map<NodeId, number>();
  /** Counters for the run summary. */
  leadersElected = 0;
  /** Indexes first seen committed as the last committed index while holding an older term's entry. */
  oldTermCommits = 0;

  /** Call when `id` is leader of `term` (after persisting the Ready that reported it). */
  observeLeader(id: NodeId, term: number, log: LogView): void {
    const prev = this.leaderOfTerm.get(term);
    if (prev !== undefined && prev !== id) {
      throw new Violation("election safety", `members ${prev} and ${id} were both leader in term ${term}`);
    }
    if (prev === undefined) {
      this.leaderOfTerm.set(term, id);
      this.leadersElected++;
    }
    const snapIndex = log.snapshotIndex();
    for (let i = snapIndex + 1; i <= this.maxCommitted; i++) {
      const c = this.committed.get(i);
      if (c === undefined || c.commitTerm >= term) continue;
      const t = log.termAt(i);
      if (t !== c.term) {
        throw new Violation(
          "leader completeness",
          `leader ${id} of term ${term} has ${t === undefined ? "no entry" : `term ${t}`} at index ${i}, ` +
            `which was committed with term ${c.term} in term ${c.commitTerm}`,
        );
      }
    }
  }

  /** Call for entries a member just appended to its log (`log` already includes them). */
  observePersistedEntries(id: NodeId, appended: readonly Entry[], log: LogView): void {
    for (const e of appended) {
      if (e.index <= log.snapshotIndex()) continue;
      const prevTerm = e.index - 1 <= 0 ? 0 : log.termAt(e.index - 1);
      const key = `${e.index}:${e.term}`;
      const fp = entryFingerprint(e);
      const seen = this.entries.get(key);
      if (seen === undefined) {
        this.entries.set(key, { fingerprint: fp, prevTerm });
        continue;
      }
      if (seen.fingerprint !== fp) {
        throw new Violation("log matching", `member ${id} holds a different entry at index ${e.index} term ${e.term}`);
      }
      if (seen.prevTerm !== undefined && prevTerm !== undefined && seen.prevTerm !== prevTerm) {
        throw new Violation(
          "log matching",
          `member ${id} has term ${prevTerm} at index ${e.index - 1} before entry ${e.index}/${e.term}, ` +
            `another log has term ${seen.prevTerm} there`,
        );
      }
      if (seen.prevTerm === undefined && prevTerm !== undefined) seen.prevTerm = prevTerm;
    }
  }

  /**
   * Call when a member reports `commit` (HardState) while in `currentTerm`; checks every index
   * in (fromIndex, commit] against what is known committed.
   */
  observeCommit(id: NodeId, fromIndex: number, commit: number, currentTerm: number, log: LogView): void {
    if (commit > log.lastIndex()) {
      throw new Violation("commit bound", `member ${id} reports commit ${commit} beyond its last index ${log.lastIndex()}`);
    }
    for (let i = Math.max(fromIndex, log.snapshotIndex()) + 1; i <= commit; i++) {
      const t = log.termAt(i);
      if (t === undefined) continue;
      const c = this.committed.get(i);
      if (c === undefined) {
        if (i === commit && t < currentTerm) this.oldTermCommits++;
        this.committed.set(i, { term: t, commitTerm: currentTerm });
        if (i > this.maxCommitted) this.maxCommitted = i;
      } else if (c.term !== t) {
        throw new Violation(
          "committed entry changed",
          `member ${id} reports index ${i} committed with term ${t}, but it was committed with term ${c.term}`,
        );
      } else if (currentTerm < c.commitTerm) {
        c.commitTerm = currentTerm;
      }
    }
  }

  /** Call with every HardState a member persisted. */
  observeHardState(id: NodeId, term: number, vote: NodeId): void {
    const max = this.maxTerm.get(id) ?? 0;
    if (term < max) {
      throw new Violation("term monotonic", `member ${id} reports term ${term} after term ${max}`);
    }
    if (term > max) this.maxTerm.set(id, term);
    if (vote === 0n) return;
    const key = `${id}:${term}`;
    const prev = this.votes.get(key);
    if (prev === undefined) this.votes.set(key, vote);
    else if (prev !== vote) {
      throw new Violation("one vote per term", `member ${id} voted for ${prev} and then for ${vote} in term ${term}`);
    }
  }

  /** Call before a leader's new entries are appended to its log (lastIndex as it was). */
  observeLeaderAppend(id: NodeId, term: number, lastIndexBefore: number, appended: readonly Entry[]): void {
    const first = appended[0];
    if (first === undefined) return;
    if (first.index <= lastIndexBefore) {
      throw new Violation(
        "leader append-only",
        `leader ${id} of term ${term} rewrote its log from index ${first.index} (its last index was ${lastIndexBefore})`,
      );
    }
  }

  /** Call after a member applied `e`; `digest` is its state machine's digest afterwards. */
  observeApply(id: NodeId, e: Entry, digest: string): void {
    const fp = entryFingerprint(e);
    const seen = this.applied.get(e.index);
    if (seen === undefined) {
      this.applied.set(e.index, { term: e.term, fingerprint: fp, digest, by: id });
      return;
    }
    if (seen.term !== e.term || seen.fingerprint !== fp) {
      throw new Violation(
        "state machine safety",
        `member ${id} applied entry ${e.index}/${e.term}, member ${seen.by} applied ${e.index}/${seen.term} (a different entry)`,
      );
    }
    if (seen.digest !== digest) {
      throw new Violation(
        "state machine safety",
        `member ${id}'s state after applying index ${e.index} (${digest}) differs from member ${seen.by}'s (${seen.digest})`,
      );
    }
  }
}
