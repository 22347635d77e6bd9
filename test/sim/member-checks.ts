/**
 * Raft's safety properties on real members: adapts the driver's and the apply path's observer
 * hooks (bootstrap's MemberObserver) to the SafetyChecker, per member incarnation. On top of the
 * checker's properties: commit never goes back within an incarnation, and committed entries are
 * handed to apply in order, contiguously, and only once committed.
 */
import type { MemberObserver } from "../../server/src/server/bootstrap.js";
import type { MemoryStorage } from "../../server/src/raft/storage.js";
import { StateRole, type Entry, type NodeId, type Ready } from "../../server/src/raft/types.js";
import { SafetyChecker, Violation, logView } from "./safety-checker.js";


/** What the checks remember of one incarnation. */
interface Incarnation {
  role: StateRole;
  commit: number;
  /** Highest commit index already checked against the committed registry. */
  checkedCommit: number;
  /** The term when the Ready being handled was taken. */
  termAtTaken: number;
  /** Last index handed to apply (-1: not yet known in this incarnation). */
  handedToApply: number;
}

export class MemberChecks {
  readonly checker = new SafetyChecker();
  readies = 0;
  /**
   * The first violation seen. The hooks run inside the member, whose own error handling must not
   * see a check fail (it would halt the member instead): they record it here for the run.
   */
  violation: Violation | undefined;

  private guard<A extends unknown[]>(hook: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        hook(...args);
      } catch (err) {
        if (!(err instanceof Violation)) throw err;
        this.violation ??= err;
      }
    };
  }

  /** An observer for one incarnation of member `id`. */
  observer(id: NodeId): MemberObserver {
    let inc: Incarnation | undefined;
    const state = (log: MemoryStorage): Incarnation => {
      if (inc === undefined) {
        const hs = log.initialState().hardState;
        inc = { role: StateRole.Follower, commit: hs.commit, checkedCommit: 0, termAtTaken: hs.term, handedToApply: -1 };
      }
      return inc;
    };
    const checker = this.checker;
    return {
      taken: this.guard((rd: Ready, log: MemoryStorage) => {
        this.readies++;
        const s = state(log);
        s.termAtTaken = rd.hardState?.term ?? log.initialState().hardState.term;
        if (s.role === StateRole.Leader && (!rd.softState || rd.softState.role === StateRole.Leader) && rd.entries.length > 0) {
          checker.observeLeaderAppend(id, rd.entries[0]!.term, log.lastIndex(), rd.entries);
        }
      }),
      persisted: this.guard((rd: Ready, log: MemoryStorage) => {
        const s = state(log);
        const view = logView(log);
        if (rd.entries.length > 0) checker.observePersistedEntries(id, rd.entries, view);
        if (rd.hardState) {
          const hs = rd.hardState;
          checker.observeHardState(id, hs.term, hs.vote);
          if (hs.commit < s.commit) throw new Violation("commit monotonic", `member ${id.toString(16)} commit went from ${s.commit} to ${hs.commit}`);
          s.commit = hs.commit;
          checker.observeCommit(id, s.checkedCommit, hs.commit, hs.term, view);
          s.checkedCommit = Math.max(s.checkedCommit, hs.commit);
        } else if (s.checkedCommit < s.commit) {
          // First Ready after a restart: the restored commit still needs checking.
          checker.observeCommit(id, s.checkedCommit, s.commit, s.termAtTaken, view);
          s.checkedCommit = s.commit;
        }
        if (rd.softState) {
          const was = s.role;
          s.role = rd.softState.role;
          if (s.role === StateRole.Leader && was !== StateRole.Leader) checker.observeLeader(id, s.termAtTaken, view);
        }
        if (rd.snapshot && rd.snapshot.metadata.index > 0) s.handedToApply = rd.snapshot.metadata.index;
        for (const e of rd.committedEntries) {
          if (s.handedToApply >= 0 && e.index !== s.handedToApply + 1) {
            throw new Violation("applied monotonic", `member ${id.toString(16)} was handed entry ${e.index} to apply after ${s.handedToApply}`);
          }
          if (e.index > s.commit) {
            throw new Violation("apply committed only", `member ${id.toString(16)} was handed entry ${e.index} beyond its commit ${s.commit}`);
          }
          s.handedToApply = e.index;
        }
      }),
      applied: this.guard((entry: Entry, revision: number) => {
        checker.observeApply(id, entry, `rev ${revision}`);
      }),
    };
  }
}
